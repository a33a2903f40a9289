//! Checking a request's tensors against what the model declares, so every protocol gives
//! the same 400 for the same mistake and backends never see a malformed tensor.

use super::TensorSpec;
use crate::error::InferError;
use crate::tensor::{element_count, Tensor};

/// Puts `inputs` in the model's order, casts numbers to the model's datatypes and checks
/// every shape. A single input is matched to a single-input model whatever its name,
/// because clients name it differently (`input-0`, `X`, `predict`).
pub fn conform(specs: &[TensorSpec], mut inputs: Vec<Tensor>) -> Result<Vec<Tensor>, InferError> {
    for input in &inputs {
        check_data_len(input)?;
    }
    let ordered = if specs.len() == 1 && inputs.len() == 1 {
        inputs
    } else {
        let mut ordered = Vec::with_capacity(specs.len());
        for spec in specs {
            let Some(at) = inputs.iter().position(|i| i.name == spec.name) else {
                return Err(InferError::input(
                    &spec.name,
                    format!("missing; the model takes {}", names(specs)),
                ));
            };
            ordered.push(inputs.swap_remove(at));
        }
        if let Some(extra) = inputs.first() {
            return Err(InferError::input(
                &extra.name,
                format!("not an input of the model, which takes {}", names(specs)),
            ));
        }
        ordered
    };
    let mut rows = None;
    ordered
        .into_iter()
        .zip(specs)
        .map(|(input, spec)| {
            let input = conform_one(input, spec)?;
            if let Some(first) = input.shape.first() {
                match rows {
                    None => rows = Some(*first),
                    Some(r) if r != *first => {
                        return Err(InferError::input(
                            &spec.name,
                            format!("has {first} rows but another input has {r}"),
                        ))
                    }
                    Some(_) => {}
                }
            }
            Ok(input)
        })
        .collect()
}

fn check_data_len(input: &Tensor) -> Result<(), InferError> {
    let expected = element_count(&input.shape);
    if expected != Some(input.data.len()) {
        return Err(InferError::input(
            &input.name,
            format!(
                "shape {:?} needs {} values but the data has {}",
                input.shape,
                expected.map_or_else(|| "too many".to_string(), |n| n.to_string()),
                input.data.len()
            ),
        ));
    }
    Ok(())
}

fn conform_one(mut input: Tensor, spec: &TensorSpec) -> Result<Tensor, InferError> {
    let from = input.data.datatype();
    input.data = input.data.cast(spec.datatype).ok_or_else(|| {
        InferError::input(
            &input.name,
            format!(
                "datatype {from} does not fit the model, which takes {}",
                spec.datatype
            ),
        )
    })?;
    let fits = input.shape.len() == spec.shape.len()
        && input
            .shape
            .iter()
            .zip(&spec.shape)
            .all(|(&got, &want)| want < 0 || got as i64 == want);
    if !fits {
        return Err(InferError::input(
            &input.name,
            format!(
                "shape {:?} does not match the model's {:?} (-1 is any size)",
                input.shape, spec.shape
            ),
        ));
    }
    input.name.clone_from(&spec.name);
    Ok(input)
}

fn names(specs: &[TensorSpec]) -> String {
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{Datatype, TensorData};

    fn spec(name: &str, shape: &[i64]) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            datatype: Datatype::Fp32,
            shape: shape.to_vec(),
        }
    }

    fn tensor(name: &str, shape: &[usize], data: Vec<f64>) -> Tensor {
        Tensor {
            name: name.into(),
            shape: shape.to_vec(),
            data: TensorData::Fp64(data),
        }
    }

    #[test]
    fn casts_and_renames_a_single_input() {
        let out = conform(
            &[spec("X", &[-1, 2])],
            vec![tensor("input-0", &[1, 2], vec![1.0, 2.0])],
        )
        .unwrap();
        assert_eq!(out[0].name, "X");
        assert_eq!(out[0].data, TensorData::Fp32(vec![1.0, 2.0]));
    }

    #[test]
    fn names_the_input_and_what_was_expected() {
        let specs = [spec("X", &[-1, 4])];
        let e = conform(&specs, vec![tensor("a", &[1, 3], vec![0.0; 3])]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "input a: shape [1, 3] does not match the model's [-1, 4] (-1 is any size)"
        );
        let e = conform(&specs, vec![tensor("a", &[2, 4], vec![0.0; 3])]).unwrap_err();
        assert!(
            e.to_string().contains("needs 8 values but the data has 3"),
            "{e}"
        );
        let bytes = Tensor {
            name: "a".into(),
            shape: vec![1],
            data: TensorData::Bytes(vec![vec![]]),
        };
        let e = conform(&specs, vec![bytes]).unwrap_err();
        assert!(
            e.to_string()
                .contains("datatype BYTES does not fit the model, which takes FP32"),
            "{e}"
        );
    }

    #[test]
    fn matches_several_inputs_by_name() {
        let specs = [spec("a", &[-1]), spec("b", &[-1])];
        let out = conform(
            &specs,
            vec![tensor("b", &[1], vec![2.0]), tensor("a", &[1], vec![1.0])],
        )
        .unwrap();
        assert_eq!((out[0].name.as_str(), out[1].name.as_str()), ("a", "b"));
        let e = conform(&specs, vec![tensor("a", &[1], vec![1.0])]).unwrap_err();
        assert_eq!(e.to_string(), "input b: missing; the model takes a, b");
        let e = conform(
            &specs,
            vec![
                tensor("a", &[1], vec![1.0]),
                tensor("b", &[2], vec![1.0, 2.0]),
            ],
        )
        .unwrap_err();
        assert!(e.to_string().contains("rows"), "{e}");
    }
}
