//! Choosing the ServingRuntime for a model, with KServe's rules: an explicit `runtime` is
//! looked up namespaced first, then cluster-wide, and must list the model's format;
//! otherwise the enabled, single-model runtimes that auto-select the format (name and
//! version) and speak the model's protocol compete by priority, namespaced before cluster.

use std::cmp::Ordering;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::predictor::{ModelFormat, ModelSpec, Protocol};
use crate::serving_runtime::{
    ClusterServingRuntime, ServingRuntime, ServingRuntimeSpec, SupportedModelFormat,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeScope {
    Namespaced,
    Cluster,
}

/// The runtime chosen for a model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelectedRuntime<'a> {
    pub name: &'a str,
    pub scope: RuntimeScope,
    pub spec: &'a ServingRuntimeSpec,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuntimeSelectionError {
    #[error("runtime {name:?} not found as a ServingRuntime in the namespace or as a ClusterServingRuntime")]
    NotFound { name: String },
    #[error("runtime {name:?} is disabled")]
    Disabled { name: String },
    #[error("runtime {name:?} does not support model format {format} (it supports {supported})")]
    FormatNotSupported {
        name: String,
        format: String,
        supported: String,
    },
    #[error("runtime {name:?} does not support protocol {protocol}")]
    ProtocolNotSupported { name: String, protocol: Protocol },
    #[error("no runtime found to serve model format {format} over protocol {protocol}: add a ServingRuntime with autoSelect for it, or name one in spec.predictor.model.runtime")]
    NoMatch { format: String, protocol: Protocol },
}

struct Candidate<'a> {
    meta: &'a ObjectMeta,
    scope: RuntimeScope,
    spec: &'a ServingRuntimeSpec,
}

impl<'a> Candidate<'a> {
    fn name(&self) -> &'a str {
        self.meta.name.as_deref().unwrap_or_default()
    }

    fn selected(&self) -> SelectedRuntime<'a> {
        SelectedRuntime {
            name: self.name(),
            scope: self.scope,
            spec: self.spec,
        }
    }
}

/// Picks the runtime for `model` among the runtimes in its namespace and the cluster's.
pub fn select_runtime<'a>(
    model: &ModelSpec,
    namespaced: &'a [ServingRuntime],
    cluster: &'a [ClusterServingRuntime],
) -> Result<SelectedRuntime<'a>, RuntimeSelectionError> {
    let protocol = model.protocol();
    let ns = namespaced.iter().map(|r| Candidate {
        meta: &r.metadata,
        scope: RuntimeScope::Namespaced,
        spec: &r.spec,
    });
    let cl = cluster.iter().map(|r| Candidate {
        meta: &r.metadata,
        scope: RuntimeScope::Cluster,
        spec: &r.spec.runtime,
    });

    if let Some(wanted) = &model.runtime {
        let runtime = ns.chain(cl).find(|c| c.name() == wanted).ok_or_else(|| {
            RuntimeSelectionError::NotFound {
                name: wanted.clone(),
            }
        })?;
        return check_explicit(&runtime, &model.model_format, protocol);
    }

    let best = |candidates: Vec<Candidate<'a>>| -> Option<SelectedRuntime<'a>> {
        let mut matching: Vec<(Option<i32>, Candidate<'a>)> = candidates
            .into_iter()
            .filter(|c| !c.spec.is_disabled() && !c.spec.is_multi_model())
            .filter(|c| c.spec.supports_protocol(protocol))
            .filter_map(|c| {
                let format = supported_format(c.spec, &model.model_format, true)?;
                Some((format.priority, c))
            })
            .collect();
        matching.sort_by(|(pa, a), (pb, b)| rank(*pa, a, *pb, b));
        matching.first().map(|(_, c)| c.selected())
    };
    best(ns.collect())
        .or_else(|| best(cl.collect()))
        .ok_or_else(|| RuntimeSelectionError::NoMatch {
            format: describe_format(&model.model_format),
            protocol,
        })
}

/// Higher priority first (unset lowest), then newest, then by name for a stable answer.
fn rank(pa: Option<i32>, a: &Candidate<'_>, pb: Option<i32>, b: &Candidate<'_>) -> Ordering {
    let created = |c: &Candidate<'_>| c.meta.creation_timestamp.as_ref().map(|t| t.0);
    pb.cmp(&pa)
        .then_with(|| created(b).cmp(&created(a)))
        .then_with(|| a.name().cmp(b.name()))
}

fn check_explicit<'a>(
    runtime: &Candidate<'a>,
    format: &ModelFormat,
    protocol: Protocol,
) -> Result<SelectedRuntime<'a>, RuntimeSelectionError> {
    let name = runtime.name().to_string();
    if runtime.spec.is_disabled() {
        return Err(RuntimeSelectionError::Disabled { name });
    }
    if supported_format(runtime.spec, format, false).is_none() {
        let supported: Vec<String> = runtime
            .spec
            .supported_model_formats
            .iter()
            .map(|f| {
                describe_format(&ModelFormat {
                    name: f.name.clone(),
                    version: f.version.clone(),
                })
            })
            .collect();
        return Err(RuntimeSelectionError::FormatNotSupported {
            name,
            format: describe_format(format),
            supported: if supported.is_empty() {
                "none".into()
            } else {
                supported.join(", ")
            },
        });
    }
    if !runtime.spec.supports_protocol(protocol) {
        return Err(RuntimeSelectionError::ProtocolNotSupported { name, protocol });
    }
    Ok(runtime.selected())
}

/// The runtime's entry for `format`, if it lists one (and auto-selects it, when asked).
fn supported_format<'s>(
    spec: &'s ServingRuntimeSpec,
    format: &ModelFormat,
    auto_select_only: bool,
) -> Option<&'s SupportedModelFormat> {
    spec.supported_model_formats.iter().find(|f| {
        f.name.eq_ignore_ascii_case(&format.name)
            && versions_match(f.version.as_deref(), format.version.as_deref())
            && (!auto_select_only || f.auto_select == Some(true))
    })
}

/// A model version matches a runtime version when they are equal or the runtime's is a
/// dotted prefix of it (runtime `1` serves model `1.2`); an unset side matches anything.
fn versions_match(runtime: Option<&str>, model: Option<&str>) -> bool {
    match (runtime, model) {
        (Some(r), Some(m)) => m == r || m.strip_prefix(r).is_some_and(|rest| rest.starts_with('.')),
        _ => true,
    }
}

fn describe_format(format: &ModelFormat) -> String {
    match &format.version {
        Some(v) => format!("{} (version {v})", format.name),
        None => format.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictor::PredictorExtensionSpec;
    use crate::serving_runtime::ClusterServingRuntimeSpec;

    fn format(
        name: &str,
        version: Option<&str>,
        auto: bool,
        priority: Option<i32>,
    ) -> SupportedModelFormat {
        SupportedModelFormat {
            name: name.into(),
            version: version.map(String::from),
            auto_select: Some(auto),
            priority,
        }
    }

    fn spec(formats: Vec<SupportedModelFormat>, protocols: Vec<Protocol>) -> ServingRuntimeSpec {
        ServingRuntimeSpec {
            supported_model_formats: formats,
            protocol_versions: protocols,
            ..ServingRuntimeSpec::default()
        }
    }

    fn namespaced(name: &str, spec: ServingRuntimeSpec) -> ServingRuntime {
        ServingRuntime::new(name, spec)
    }

    fn cluster(name: &str, spec: ServingRuntimeSpec) -> ClusterServingRuntime {
        ClusterServingRuntime::new(name, ClusterServingRuntimeSpec { runtime: spec })
    }

    fn model(
        name: &str,
        version: Option<&str>,
        protocol: Option<Protocol>,
        runtime: Option<&str>,
    ) -> ModelSpec {
        ModelSpec {
            model_format: ModelFormat {
                name: name.into(),
                version: version.map(String::from),
            },
            runtime: runtime.map(String::from),
            extension: PredictorExtensionSpec {
                protocol_version: protocol,
                ..Default::default()
            },
        }
    }

    #[test]
    fn auto_selection_follows_kserve_rules() {
        let ns = vec![
            namespaced(
                "ns-sklearn-low",
                spec(vec![format("sklearn", None, true, Some(1))], vec![]),
            ),
            namespaced(
                "ns-sklearn-high",
                spec(vec![format("sklearn", None, true, Some(5))], vec![]),
            ),
            namespaced(
                "ns-onnx-manual",
                spec(vec![format("onnx", None, false, None)], vec![]),
            ),
            namespaced(
                "ns-xgb-v2-only",
                spec(
                    vec![format("xgboost", Some("1"), true, None)],
                    vec![Protocol::V2],
                ),
            ),
        ];
        let cl = vec![
            cluster(
                "cl-sklearn-top",
                spec(vec![format("sklearn", None, true, Some(100))], vec![]),
            ),
            cluster(
                "cl-onnx",
                spec(
                    vec![format("onnx", Some("1"), true, None)],
                    vec![Protocol::V1, Protocol::V2],
                ),
            ),
            cluster(
                "cl-xgb",
                spec(vec![format("XGBoost", None, true, None)], vec![]),
            ),
        ];
        // (model, expected runtime or None for no match)
        let cases = [
            // Namespaced runtimes win over cluster ones, however high the cluster priority.
            (model("sklearn", None, None, None), Some("ns-sklearn-high")),
            // autoSelect: false is never auto-selected; the cluster runtime is.
            (model("onnx", Some("1.14"), None, None), Some("cl-onnx")),
            // Version: runtime "1" serves model 1.x, not 2.x; names compare case-insensitively.
            (model("onnx", Some("2.0"), None, None), None),
            (
                model("xgboost", Some("1.7"), Some(Protocol::V2), None),
                Some("ns-xgb-v2-only"),
            ),
            (
                model("xgboost", Some("1.7"), Some(Protocol::V1), None),
                Some("cl-xgb"),
            ),
            // Protocol: grpc-v2 is spoken by none of the onnx runtimes.
            (model("onnx", None, Some(Protocol::GrpcV2), None), None),
            (model("pmml", None, None, None), None),
        ];
        for (m, want) in cases {
            let got = select_runtime(&m, &ns, &cl).map(|r| r.name);
            match want {
                Some(name) => assert_eq!(got, Ok(name), "{m:?}"),
                None => assert!(
                    matches!(got, Err(RuntimeSelectionError::NoMatch { .. })),
                    "{m:?}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn explicit_runtime_is_looked_up_namespaced_then_cluster() {
        let ns = vec![namespaced(
            "shared",
            spec(vec![format("onnx", None, false, None)], vec![]),
        )];
        let cl = vec![
            cluster(
                "shared",
                spec(vec![format("sklearn", None, true, None)], vec![]),
            ),
            cluster(
                "grpc-only",
                spec(
                    vec![format("onnx", None, true, None)],
                    vec![Protocol::GrpcV2],
                ),
            ),
            cluster(
                "off",
                ServingRuntimeSpec {
                    disabled: Some(true),
                    ..spec(vec![format("onnx", None, true, None)], vec![])
                },
            ),
        ];
        let selected =
            select_runtime(&model("onnx", None, None, Some("shared")), &ns, &cl).unwrap();
        assert_eq!(
            (selected.name, selected.scope),
            ("shared", RuntimeScope::Namespaced)
        );
        assert!(matches!(
            select_runtime(&model("sklearn", None, None, Some("shared")), &ns, &cl),
            Err(RuntimeSelectionError::FormatNotSupported { .. })
        ));
        assert!(matches!(
            select_runtime(&model("onnx", None, None, Some("grpc-only")), &ns, &cl),
            Err(RuntimeSelectionError::ProtocolNotSupported { .. })
        ));
        assert!(matches!(
            select_runtime(&model("onnx", None, None, Some("off")), &ns, &cl),
            Err(RuntimeSelectionError::Disabled { .. })
        ));
        assert!(matches!(
            select_runtime(&model("onnx", None, None, Some("missing")), &ns, &cl),
            Err(RuntimeSelectionError::NotFound { .. })
        ));
    }

    #[test]
    fn no_match_names_format_and_protocol() {
        let err = select_runtime(
            &model("pmml", Some("4"), Some(Protocol::V2), None),
            &[],
            &[],
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("pmml (version 4)") && message.contains("v2"),
            "{message}"
        );
    }
}
