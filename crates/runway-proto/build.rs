//! Generates the gRPC contract of `proto/runway/v1` at the workspace root
//! (protoc from the `protobuf-compiler` package; `scripts/bootstrap.sh`
//! installs it). The Python stubs of `python/dagster-runway` come from the
//! same files.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    tonic_prost_build::configure()
        // Malformed requests are the caller's error (see src/codec.rs).
        .codec_path("crate::codec::StrictCodec")
        .file_descriptor_set_path(out.join("runway_descriptor.bin"))
        .compile_protos(
            &[
                root.join("runway/v1/launcher.proto"),
                root.join("runway/v1/steps.proto"),
            ],
            &[root],
        )?;
    Ok(())
}
