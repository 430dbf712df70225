//! Shared test helper: validates generated WGSL with naga (parse + full validation under
//! WebGPU's baseline capabilities), so shader errors surface without a GPU.

/// Parses and validates `source`, returning naga's report on failure.
pub fn validate(source: &str) -> Result<(), String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    let mut validator = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    );
    validator
        .validate(&module)
        .map(|_| ())
        .map_err(|e| e.emit_to_string(source))
}
