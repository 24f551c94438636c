//! A list page as the API sends it: a JSON array written from the rows, ended early at
//! the last whole item within the page's byte bound (PAGE_MAX_BYTES), so a client that
//! asks for a page of huge items and never reads it pins at most that many bytes.

use tokio_postgres::Row;

use super::Error;

/// One page's JSON array, and the cursor of the page after it when there is one.
#[derive(Debug)]
pub struct PageBody {
    pub json: Vec<u8>,
    pub next_cursor: Option<String>,
}

/// Writes `rows` as a JSON array with `write_item`, ending the array before the first item
/// that would take it past `max_bytes` (the first item is always written). The `api.list_*`
/// functions put a cursor (column `cursor_column`) on every row a page may end at, and on
/// the last row when another page follows.
pub(super) fn write(
    rows: &[Row],
    cursor_column: usize,
    max_bytes: Option<i32>,
    mut write_item: impl FnMut(&mut Vec<u8>, &Row) -> Result<(), Error>,
) -> Result<PageBody, Error> {
    let max_bytes = max_bytes.and_then(|max| usize::try_from(max).ok());
    let mut json = Vec::with_capacity(2 + rows.len() * 512);
    json.push(b'[');
    for (i, row) in rows.iter().enumerate() {
        let start = json.len();
        if i > 0 {
            json.push(b',');
        }
        write_item(&mut json, row)?;
        // One byte more for the closing bracket.
        if i > 0 && max_bytes.is_some_and(|max| json.len() + 1 > max) {
            json.truncate(start);
            json.push(b']');
            let next_cursor = cursor(&rows[i - 1], cursor_column)?.ok_or_else(|| {
                Error::Internal(format!("the page had to end after row {i}, which has no cursor").into())
            })?;
            return Ok(PageBody { json, next_cursor: Some(next_cursor) });
        }
    }
    json.push(b']');
    let next_cursor = rows.last().map(|row| cursor(row, cursor_column)).transpose()?.flatten();
    Ok(PageBody { json, next_cursor })
}

fn cursor(row: &Row, column: usize) -> Result<Option<String>, Error> {
    Ok(row.try_get(column)?)
}
