//! Compiles the .proto files with protox (pure Rust), so no system `protoc`
//! is needed on a fresh machine.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/convoy/v1/agent.proto", "proto/convoy/v1/control.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
