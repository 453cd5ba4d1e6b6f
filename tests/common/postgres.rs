//! A PostgreSQL schema per test, for the backend tests that run when
//! `KILN_TEST_POSTGRES_URL` is set.
#![allow(dead_code)]

fn run<F: std::future::Future>(future: F) -> F::Output {
    actix_web::rt::System::new().block_on(future)
}

/// A schema of its own for one test, dropped afterwards.
pub(crate) struct Schema {
    pub admin_url: String,
    pub name: String,
}

impl Schema {
    pub(crate) fn create(test: &str) -> Option<Schema> {
        let url = super::require(
            std::env::var("KILN_TEST_POSTGRES_URL")
                .map_err(|_| "KILN_TEST_POSTGRES_URL is not set".to_string()),
            test,
        )?;
        let name = format!("kiln_{test}_{}", std::process::id());
        admin(
            &url,
            &format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"),
        );
        Some(Schema {
            admin_url: url,
            name,
        })
    }

    /// The URL with this schema first on the search path.
    pub(crate) fn url(&self) -> String {
        with_search_path(&self.admin_url, &self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        admin(
            &self.admin_url,
            &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
        );
    }
}

fn with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

/// Runs `sql` on a connection of its own (on a thread of its own, so
/// tests can call it from inside their runtime).
pub(crate) fn admin(url: &str, sql: &str) {
    let sql = sql.to_string();
    let url = url.to_string();
    std::thread::spawn(move || {
        run(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("PostgreSQL at KILN_TEST_POSTGRES_URL");
            actix_web::rt::spawn(connection);
            client.batch_execute(&sql).await.expect("admin statement");
        })
    })
    .join()
    .expect("admin thread");
}

/// The first column of the first row of `sql`, a count.
pub(crate) fn count(url: &str, sql: &str) -> i64 {
    let sql = sql.to_string();
    let url = url.to_string();
    std::thread::spawn(move || {
        run(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("PostgreSQL at KILN_TEST_POSTGRES_URL");
            actix_web::rt::spawn(connection);
            let row = client.query_one(&sql, &[]).await.expect("count query");
            row.get::<_, i64>(0)
        })
    })
    .join()
    .expect("count thread")
}
