fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut cfg = prost_build::Config::new();
    cfg.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(cfg, &["proto/sluice.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/sluice.proto");
    Ok(())
}
