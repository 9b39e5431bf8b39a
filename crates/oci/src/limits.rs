/// Bounds on what one image may cost. Every limit is checked before the bytes it counts are
/// written, so a tar bomb stops with a clear error instead of filling the disk.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest manifest, index or config blob.
    pub max_metadata_bytes: u64,
    /// Largest single (compressed) layer blob.
    pub max_layer_bytes: u64,
    /// Most layers in one image.
    pub max_layers: usize,
    /// Total uncompressed bytes of file content over all layers.
    pub max_total_bytes: u64,
    /// Total tar entries over all layers.
    pub max_files: u64,
    /// Longest entry path, in bytes.
    pub max_path_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_metadata_bytes: 4 << 20,
            max_layer_bytes: 2 << 30,
            max_layers: 128,
            max_total_bytes: 8 << 30,
            max_files: 500_000,
            max_path_bytes: 4096,
        }
    }
}
