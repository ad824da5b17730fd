//! Generates the gRPC contract of `proto/runway/v1` (protoc from the
//! `protobuf-compiler` package; `scripts/bootstrap.sh` installs it).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("runway_descriptor.bin"))
        .compile_protos(
            &[
                "proto/runway/v1/launcher.proto",
                "proto/runway/v1/steps.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}
