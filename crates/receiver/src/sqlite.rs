//! What the receiver's SQLite stores share.

/// Rows of `table` (a store table with a `mapping` column) by mapping.
pub fn rows_by_mapping(conn: &rusqlite::Connection, table: &str) -> rusqlite::Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT mapping, count(*) FROM {table} GROUP BY mapping"))?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64)))?;
    rows.collect()
}
