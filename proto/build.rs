//! Compiles the `.proto` files with protox (a protobuf compiler in Rust: no system `protoc`)
//! and generates prost messages and tonic clients and servers from them.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/herald/v1/central_node.proto",
        "proto/herald/v1/heartbeat.proto",
        "proto/herald/v1/system_register.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Documents travel as `bytes::Bytes`: cloning an entry for many streams copies nothing.
        .bytes(".herald.v1.SystemRegisterEntry.blueprint_document")
        .bytes(".herald.v1.BlueprintNotification.blueprint_summary")
        .compile_fds(descriptors)?;
    Ok(())
}
