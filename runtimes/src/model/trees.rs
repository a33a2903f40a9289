//! XGBoost and LightGBM models (evaluated in Rust by [`crate::trees`]) as a [`Model`]:
//! one FP64 input of rows, one FP64 output of what the library's `Booster.predict` returns.

use super::{Model, TensorSpec};
use crate::error::InferError;
use crate::tensor::{Datatype, Tensor, TensorData};
use crate::trees::{Library, TabularModel};

/// Names as KServe's xgbserver and lgbserver use them in V2.
const INPUT: &str = "input-0";
const OUTPUT: &str = "output-0";

#[derive(Debug)]
pub struct TreeModel {
    model: Box<dyn TabularModel>,
    inputs: [TensorSpec; 1],
    outputs: [TensorSpec; 1],
}

impl TreeModel {
    pub fn new(model: Box<dyn TabularModel>) -> Self {
        let n_outputs = model.n_outputs();
        // One value per row comes back as a vector, as Python's `predict` returns it.
        let output_shape = if n_outputs == 1 {
            vec![-1]
        } else {
            vec![-1, n_outputs as i64]
        };
        Self {
            inputs: [TensorSpec {
                name: INPUT.into(),
                datatype: Datatype::Fp64,
                shape: vec![-1, model.n_features() as i64],
            }],
            outputs: [TensorSpec {
                name: OUTPUT.into(),
                datatype: Datatype::Fp64,
                shape: output_shape,
            }],
            model,
        }
    }
}

impl Model for TreeModel {
    fn platform(&self) -> &'static str {
        match self.model.library() {
            Library::Xgboost => "xgboost",
            Library::Lightgbm => "lightgbm",
        }
    }

    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn predict(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, InferError> {
        let Some(Tensor {
            data: TensorData::Fp64(rows),
            shape,
            ..
        }) = inputs.into_iter().next()
        else {
            return Err(InferError::Model("tree models take one FP64 input".into()));
        };
        let n_rows = shape.first().copied().unwrap_or(0);
        let values = self
            .model
            .predict(&rows, n_rows)
            .map_err(|e| InferError::input(INPUT, e.to_string()))?;
        let n_outputs = self.model.n_outputs();
        let shape = if n_outputs == 1 {
            vec![n_rows]
        } else {
            vec![n_rows, n_outputs]
        };
        Ok(vec![Tensor {
            name: OUTPUT.into(),
            shape,
            data: TensorData::Fp64(values),
        }])
    }
}
