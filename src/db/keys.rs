//! The service's keys (migration 7's `secrets.keys`), read once at start as the owner:
//! no request role can read them.

/// The HMAC key of issue entity tags: the same for every instance on this database.
pub async fn etag_key(owner: impl Into<super::Endpoint>) -> Result<[u8; 32], tokio_postgres::Error> {
    let client = super::connect_owner(owner).await?;
    let row = client.query_one("select key from secrets.keys where name = 'etag'", &[]).await?;
    let key: Vec<u8> = row.get(0);
    Ok(key.try_into().expect("secrets.keys holds 32-byte keys (a check constraint)"))
}
