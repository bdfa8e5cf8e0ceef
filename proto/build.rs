//! Compiles proto/ into the gRPC code of `mpc-proto` (tonic and prost), and writes the
//! descriptor set that server reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "mpc/v1/common.proto",
        "mpc/v1/sessions.proto",
        "mpc/v1/keys.proto",
        "mpc/v1/cluster.proto",
        "mpc/v1/parties.proto",
        "mpc/v1/access.proto",
        "mpc/v1/relay.proto",
        "mpc/raft/v1/raft.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    // protox compiles in pure Rust: no system protoc needed to build.
    let fds = protox::compile(protos, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("mpc_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
