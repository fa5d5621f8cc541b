//! One stored variable of a resolution group, as a collection's layout describes it.

/// One stored variable of a resolution group: what its Zarr array metadata and CF attributes say.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Variable {
    pub name: &'static str,
    pub dtype: &'static str,
    pub fill: i64,
    /// CF `scale_factor` (1 when the stored values are the physical ones).
    pub scale: f64,
    pub units: &'static str,
}
