//! Greedy decoding of a GGUF llama-family model with candle-transformers' quantized llama,
//! timed: prints prompt tokens/s and decode tokens/s for one sequence. Token ids stand in
//! for text (candle needs a tokenizer.json the GGUF file does not carry); the speed does
//! not depend on which ids they are.
//!
//! usage: candle-decode MODEL.gguf [DECODE_TOKENS] [THREADS]

use std::time::Instant;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: candle-decode MODEL.gguf [N]")?;
    let n: usize = args.next().map_or(Ok(128), |s| s.parse())?;
    let device = Device::Cpu;
    let mut file = std::fs::File::open(&path)?;
    let content = gguf_file::Content::read(&mut file)?;
    let mut model = ModelWeights::from_gguf(content, &mut file, &device)?;
    let prompt: Vec<u32> = (0..16).map(|i| 100 + i * 37).collect();
    let started = Instant::now();
    let input = Tensor::new(prompt.as_slice(), &device)?.unsqueeze(0)?;
    let logits = model.forward(&input, 0)?;
    let mut next = logits.squeeze(0)?.argmax(0)?.to_scalar::<u32>()?;
    let prefill = started.elapsed();
    let started = Instant::now();
    for i in 0..n {
        let input = Tensor::new(&[next], &device)?.unsqueeze(0)?;
        let logits = model.forward(&input, prompt.len() + i)?;
        next = logits.squeeze(0)?.argmax(0)?.to_scalar::<u32>()?;
    }
    let decode = started.elapsed();
    println!(
        "{{\"prefill_tokens_per_s\": {:.1}, \"decode_tokens_per_s\": {:.1}, \"threads\": {}}}",
        prompt.len() as f64 / prefill.as_secs_f64(),
        n as f64 / decode.as_secs_f64(),
        candle_core::utils::get_num_threads()
    );
    Ok(())
}
