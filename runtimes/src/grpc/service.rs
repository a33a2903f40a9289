//! The `inference.GRPCInferenceService` implementation over the served model.

use std::sync::Arc;

use tokio::time::Instant;
use tonic::{Request, Response, Status};

use super::contents::{input_tensor, output_tensor};
use crate::error::InferError;
use crate::model::TensorSpec;
use crate::proto::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use crate::proto::model_metadata_response::TensorMetadata;
use crate::proto::*;
use crate::served::{select_outputs, Served};

#[derive(Debug)]
pub(crate) struct Inference {
    served: Arc<Served>,
}

/// The tonic service; messages are bounded by the same limit as REST bodies.
pub(crate) fn service(served: Arc<Served>) -> GrpcInferenceServiceServer<Inference> {
    let limit = served.max_body_bytes;
    GrpcInferenceServiceServer::new(Inference { served })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX)
}

fn metadata(specs: &[TensorSpec]) -> Vec<TensorMetadata> {
    specs
        .iter()
        .map(|s| TensorMetadata {
            name: s.name.clone(),
            datatype: s.datatype.name().to_owned(),
            shape: s.shape.clone(),
        })
        .collect()
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    /// Ready as soon as it answers: the server listens only after the model has loaded.
    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse { ready: true }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        self.served.check_name(&request.get_ref().name)?;
        Ok(Response::new(ModelReadyResponse { ready: true }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: "serval".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: crate::http::EXTENSIONS
                .iter()
                .map(|e| e.to_string())
                .collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        self.served.check_name(&request.get_ref().name)?;
        let model = &self.served.model;
        Ok(Response::new(ModelMetadataResponse {
            name: self.served.name.clone(),
            versions: Vec::new(),
            platform: model.platform().into(),
            inputs: metadata(model.inputs()),
            outputs: metadata(model.outputs()),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let received = Instant::now();
        let request = request.into_inner();
        let served = &self.served;
        served.check_name(&request.model_name)?;
        let raw = &request.raw_input_contents;
        if !raw.is_empty() && raw.len() != request.inputs.len() {
            return Err(InferError::Malformed(format!(
                "{} raw_input_contents for {} inputs",
                raw.len(),
                request.inputs.len()
            ))
            .into());
        }
        let inputs = request
            .inputs
            .into_iter()
            .enumerate()
            .map(|(i, input)| input_tensor(input, raw.get(i).map(Vec::as_slice)))
            .collect::<Result<Vec<_>, _>>()?;
        let requested: Vec<&str> = request.outputs.iter().map(|o| o.name.as_str()).collect();
        served.check_outputs(requested.iter().copied())?;
        let outputs = served.infer(inputs, received).await?;
        let started = Instant::now();
        let outputs = select_outputs(outputs, &requested);
        let (descriptions, contents): (Vec<_>, Vec<_>) = outputs.iter().map(output_tensor).unzip();
        let response = ModelInferResponse {
            model_name: served.name.clone(),
            model_version: request.model_version,
            id: request.id,
            parameters: Default::default(),
            outputs: descriptions,
            raw_output_contents: contents,
        };
        served
            .metrics
            .postprocess
            .observe(started.elapsed().as_secs_f64());
        Ok(Response::new(response))
    }
}
