//! Compiles the .proto files with protox (pure Rust), so no system `protoc`
//! is needed on a fresh machine.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/convoy/v1/agent.proto",
        "proto/convoy/v1/control.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    // BTreeMaps keep encodings and iteration deterministic.
    // Small per-RPC buffers: see src/codec.rs.
    tonic_prost_build::configure()
        .btree_map(".")
        // Cheap to hand around (the plan's encoding).
        .bytes(".convoy.v1.CoordinatorMessage.encoded_plan")
        .codec_path("crate::codec::SmallBufferCodec")
        // Rare and large: kept out of line, so that every CoordinatorMessage
        // (one held per agent session) stays small.
        .boxed(".convoy.v1.RunOnce.workload")
        // Their Debug (src/lib.rs) hides the password.
        .skip_debug([
            ".convoy.v1.RegistryAuth",
            ".convoy.v1.SetRegistryAuthRequest",
            ".convoy.v1.SetSecretRequest",
            ".convoy.v1.SecretValue",
            ".convoy.v1.ApplyRequest",
        ])
        .compile_fds(fds)?;
    Ok(())
}
