//! The connection pool on its own, against SQLite always and PostgreSQL
//! when `KILN_TEST_POSTGRES_URL` is set (each run in its own schema): LIFO
//! and FIFO order, recycling by age, idle connections retired down to
//! `min_idle`, pre-ping replacing a connection the server killed, acquire
//! timeouts, and recovery once the database is reachable again.

mod common;

use common::postgres::{Schema, admin};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln::config::{DatabaseConfig, QueueOrder};
use kiln::dynamic::db::{Database, DbError, SqlValue};

fn run<F: std::future::Future>(future: F) -> F::Output {
    actix_web::rt::System::new().block_on(future)
}

fn sqlite_config(dir: &tempfile::TempDir) -> DatabaseConfig {
    DatabaseConfig {
        url: format!("sqlite://{}", dir.path().join("pool.db").display()),
        min_idle: 0,
        ..DatabaseConfig::default()
    }
}

/// Connection ids in the order `acquire` hands them out after `n`
/// connections are returned in order 1..n.
async fn order_after_return(database: &Database, n: usize) -> (Vec<u64>, u64) {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(database.acquire().await.expect("acquire"));
    }
    let returned: Vec<u64> = held.iter().map(|conn| conn.id()).collect();
    for conn in held {
        drop(conn);
    }
    let next = database.acquire().await.expect("acquire").id();
    (returned, next)
}

#[test]
fn lifo_hands_out_the_most_recently_returned_connection() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let lifo = Database::open(&sqlite_config(&dir), dir.path()).unwrap();
        let (returned, next) = order_after_return(&lifo, 3).await;
        assert_eq!(next, *returned.last().unwrap());

        let fifo_config = DatabaseConfig {
            queue: QueueOrder::Fifo,
            ..sqlite_config(&dir)
        };
        let fifo = Database::open(&fifo_config, dir.path()).unwrap();
        let (returned, next) = order_after_return(&fifo, 3).await;
        assert_eq!(next, returned[0]);
    });
}

#[test]
fn connections_older_than_max_lifetime_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let config = DatabaseConfig {
        max_lifetime_secs: 1,
        ..sqlite_config(&dir)
    };
    run(async {
        let database = Database::open(&config, dir.path()).unwrap();
        let first = database.acquire().await.unwrap().id();
        assert_eq!(
            database.acquire().await.unwrap().id(),
            first,
            "young: reused"
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let later = database.acquire().await.unwrap().id();
        assert_ne!(later, first, "aged out: replaced");
    });
}

#[test]
fn idle_connections_are_retired_down_to_min_idle() {
    let dir = tempfile::tempdir().unwrap();
    let config = DatabaseConfig {
        idle_timeout_secs: 1,
        min_idle: 1,
        ..sqlite_config(&dir)
    };
    run(async {
        let database = Database::open(&config, dir.path()).unwrap();
        database.maintain().await;
        assert_eq!(database.status().size, 1, "min_idle is opened at start-up");
        let held: Vec<_> = futures_util::future::join_all((0..4).map(|_| database.acquire())).await;
        drop(held);
        assert_eq!(database.status().size, 4);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        database.maintain().await;
        assert_eq!(database.status().size, 1, "idle ones close, min_idle stays");
    });
}

#[test]
fn waiting_longer_than_acquire_timeout_fails_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let config = DatabaseConfig {
        max_size: 1,
        acquire_timeout_ms: 100,
        ..sqlite_config(&dir)
    };
    run(async {
        let database = Database::open(&config, dir.path()).unwrap();
        let held = database.acquire().await.unwrap();
        let err = database.acquire().await.err().expect("times out");
        assert!(matches!(err, DbError::Timeout(_)), "{err}");
        assert!(err.is_temporary());
        drop(held);
        assert!(database.acquire().await.is_ok());
    });
}

// PostgreSQL

fn postgres_config(url: String) -> DatabaseConfig {
    DatabaseConfig {
        url,
        min_idle: 0,
        acquire_timeout_ms: 1000,
        connect_timeout_ms: 1000,
        ..DatabaseConfig::default()
    }
}

async fn backend_pid(database: &Database) -> Result<i64, DbError> {
    let conn = database.acquire().await?;
    let rows = conn
        .read(
            vec![("SELECT pg_backend_pid()::int8 AS pid".into(), vec![])],
            None,
        )
        .await?;
    match rows[0][0].get("pid") {
        Some(SqlValue::Int(pid)) => Ok(*pid),
        other => panic!("pid: {other:?}"),
    }
}

#[test]
fn postgres_lifo_order_and_pre_ping_replacing_a_killed_connection() {
    let Some(schema) = Schema::create("pool_ping") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let database = Database::open(&postgres_config(schema.url()), dir.path()).unwrap();
        let (returned, next) = order_after_return(&database, 3).await;
        assert_eq!(next, *returned.last().unwrap(), "LIFO");

        let pid = backend_pid(&database).await.unwrap();
        admin(
            &schema.admin_url,
            &format!("SELECT pg_terminate_backend({pid})"),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let replaced = backend_pid(&database)
            .await
            .expect("pre-ping hands out a live connection");
        assert_ne!(replaced, pid);
    });
}

#[test]
fn postgres_without_pre_ping_fails_once_then_recovers() {
    let Some(schema) = Schema::create("pool_noping") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = DatabaseConfig {
        pre_ping: false,
        max_size: 1,
        ..postgres_config(schema.url())
    };
    run(async {
        let database = Database::open(&config, dir.path()).unwrap();
        let pid = backend_pid(&database).await.unwrap();
        admin(
            &schema.admin_url,
            &format!("SELECT pg_terminate_backend({pid})"),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The dead connection is noticed as closed when it comes back, or
        // fails its first statement; either way the next call works.
        let first = backend_pid(&database).await;
        if let Err(err) = &first {
            assert!(
                err.is_temporary(),
                "a broken connection is a 503, not a 500: {err}"
            );
        }
        let second = backend_pid(&database).await.expect("a new connection");
        assert_ne!(second, pid);
    });
}

/// A TCP relay to PostgreSQL that can be cut and restored on the same port,
/// standing in for a database that goes away and comes back.
struct Relay {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let (accept_up, accept_streams) = (Arc::clone(&up), Arc::clone(&streams));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                if !accept_up.load(Ordering::SeqCst) {
                    continue; // refused: dropped at once
                }
                let mut all = accept_streams.lock().unwrap();
                all.push(client.try_clone().unwrap());
                all.push(server.try_clone().unwrap());
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Relay { addr, up, streams }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for stream in self.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buffer) {
            if n == 0 || to.write_all(&buffer[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

#[test]
fn postgres_outage_answers_unavailable_then_recovers() {
    let Some(schema) = Schema::create("pool_outage") else {
        return;
    };
    let config: tokio_postgres::Config = schema.admin_url.parse().unwrap();
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let target = format!("{host}:{port}")
        .to_socket_addrs_first()
        .expect("PostgreSQL address");
    let relay = Relay::start(target);
    let relayed = schema
        .url()
        .replacen(&format!("{host}:{port}"), &relay.addr.to_string(), 1);
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let database = Database::open(&postgres_config(relayed), dir.path()).unwrap();
        backend_pid(&database).await.expect("up");
        relay.cut();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let err = backend_pid(&database).await.expect_err("down");
        assert!(err.is_temporary(), "an outage is a 503: {err}");
        relay.restore();
        backend_pid(&database).await.expect("back up");
    });
}

trait FirstAddr {
    fn to_socket_addrs_first(&self) -> Option<SocketAddr>;
}

impl FirstAddr for String {
    fn to_socket_addrs_first(&self) -> Option<SocketAddr> {
        std::net::ToSocketAddrs::to_socket_addrs(self).ok()?.next()
    }
}
