//! Reading manifests: a YAML stream of documents in, each checked against its CRD schema,
//! parsed into its type and validated, with every problem named by field path.

use serde_json::Value;

use crate::crd::open_api_schema;
use crate::schema_check;
use crate::serving_runtime::{ClusterServingRuntime, ServingRuntime};
use crate::validation::{validate_inference_service, validate_serving_runtime, FieldError};
use crate::InferenceService;

/// A resource Serval serves.
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    InferenceService(Box<InferenceService>),
    ServingRuntime(Box<ServingRuntime>),
    ClusterServingRuntime(Box<ClusterServingRuntime>),
}

/// One document of a manifest stream and what checking it found.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// Position in the stream, from 1, counting only non-empty documents.
    pub number: usize,
    pub api_version: String,
    pub kind: String,
    pub name: Option<String>,
    /// The parsed resource; `None` when there are errors or the kind is not Serval's.
    pub resource: Option<Resource>,
    pub errors: Vec<FieldError>,
    /// Things worth knowing that do not make the document invalid (unknown fields, kinds
    /// Serval does not serve).
    pub warnings: Vec<String>,
}

impl Document {
    /// `kind/name` for messages.
    pub fn describe(&self) -> String {
        format!(
            "{}/{}",
            self.kind,
            self.name.as_deref().unwrap_or("<unnamed>")
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("document {number}: invalid YAML: {source}")]
    Yaml {
        number: usize,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("document {number}: {message}")]
    NotAnObject { number: usize, message: String },
}

type ServedKind = (&'static str, &'static str);
const INFERENCE_SERVICE: ServedKind = ("serving.kserve.io/v1beta1", "InferenceService");
const SERVING_RUNTIME: ServedKind = ("serving.kserve.io/v1alpha1", "ServingRuntime");
const CLUSTER_SERVING_RUNTIME: ServedKind = ("serving.kserve.io/v1alpha1", "ClusterServingRuntime");
const SERVED: [ServedKind; 3] = [INFERENCE_SERVICE, SERVING_RUNTIME, CLUSTER_SERVING_RUNTIME];

/// Parses and checks every document of a YAML stream. Errors in one document do not stop
/// the others; only YAML that cannot be read at all is an `Err`.
pub fn parse_documents(text: &str) -> Result<Vec<Document>, ManifestError> {
    let mut documents = Vec::new();
    for (i, yaml) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let number = documents.len() + 1;
        let value: serde_yaml::Value = serde::Deserialize::deserialize(yaml)
            .map_err(|source| ManifestError::Yaml { number, source })?;
        if value.is_null() {
            continue;
        }
        let json = serde_json::to_value(&value).map_err(|e| ManifestError::NotAnObject {
            number,
            message: format!("cannot be read as JSON: {e}"),
        })?;
        if !json.is_object() {
            return Err(ManifestError::NotAnObject {
                number,
                message: format!(
                    "expected a mapping with apiVersion and kind (document index {i})"
                ),
            });
        }
        documents.push(check_document(number, json));
    }
    Ok(documents)
}

/// Checks one object already read as JSON.
pub fn check_document(number: usize, json: Value) -> Document {
    let text = |key: &str| {
        json.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut doc = Document {
        number,
        api_version: text("apiVersion"),
        kind: text("kind"),
        name: json
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(String::from),
        resource: None,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    for (field, value) in [("apiVersion", &doc.api_version), ("kind", &doc.kind)] {
        if value.is_empty() {
            doc.errors.push(FieldError::new(field, "required"));
        }
    }
    if !doc.errors.is_empty() {
        return doc;
    }
    let served = SERVED.iter().find(|(_, kind)| *kind == doc.kind);
    match served {
        None => {
            doc.warnings
                .push(format!("{} is not a kind Serval serves; skipped", doc.kind));
            return doc;
        }
        Some((api_version, _)) if *api_version != doc.api_version => {
            doc.errors.push(FieldError::new(
                "apiVersion",
                format!(
                    "{:?} is not supported for {}: use {api_version}",
                    doc.api_version, doc.kind
                ),
            ));
            return doc;
        }
        Some(_) => {}
    }
    if let Some(schema) = open_api_schema(&doc.kind) {
        let report = schema_check::check(&json, schema);
        doc.errors.extend(report.errors);
        doc.warnings.extend(
            report
                .unknown_fields
                .into_iter()
                .map(|path| format!("{path}: unknown field, ignored")),
        );
    }
    if !doc.errors.is_empty() {
        return doc;
    }
    let parsed = match doc.kind.as_str() {
        "InferenceService" => typed::<InferenceService>(json).map(|isvc| {
            let errors = validate_inference_service(&isvc);
            (Resource::InferenceService(Box::new(isvc)), errors)
        }),
        "ServingRuntime" => typed::<ServingRuntime>(json).map(|rt| {
            let errors = validate_serving_runtime(&rt.metadata, &rt.spec);
            (Resource::ServingRuntime(Box::new(rt)), errors)
        }),
        _ => typed::<ClusterServingRuntime>(json).map(|rt| {
            let errors = validate_serving_runtime(&rt.metadata, &rt.spec.runtime);
            (Resource::ClusterServingRuntime(Box::new(rt)), errors)
        }),
    };
    match parsed {
        Ok((resource, errors)) if errors.is_empty() => doc.resource = Some(resource),
        Ok((_, errors)) => doc.errors = errors,
        Err(error) => doc.errors.push(error),
    }
    doc
}

fn typed<T: serde::de::DeserializeOwned>(json: Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(json).map_err(|e| {
        let path = e.path().to_string();
        FieldError::new(
            if path == "." { "<root>".into() } else { path },
            e.into_inner().to_string(),
        )
    })
}
