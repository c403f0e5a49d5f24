//! Parquet datasets (the Hugging Face hub's format) read row by row into JSON values.

use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::error::{Error, Result};

/// Reads every row of a parquet file as a JSON object, with its 1-based row number.
pub(crate) fn read_rows(path: &Path) -> Result<Vec<(usize, serde_json::Value)>> {
    let wrap = |source| Error::Parquet { path: path.to_owned(), source };
    let file = fs_err::File::open(path)?;
    let reader = SerializedFileReader::new(file.into_parts().0).map_err(wrap)?;
    let rows = reader.get_row_iter(None).map_err(wrap)?;
    let mut out = Vec::new();
    for (i, row) in rows.enumerate() {
        out.push((i + 1, row.map_err(wrap)?.to_json_value()));
    }
    Ok(out)
}
