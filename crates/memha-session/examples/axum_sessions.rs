//! A small axum site whose sessions live in memcached through memha:
//! log in, count your visits, log out.
//!
//! ```sh
//! # Without addresses, it starts 3 local memcached nodes (memcached must be installed):
//! cargo run -p memha-session --features tower-sessions --example axum_sessions
//! # Your own nodes:
//! cargo run -p memha-session --features tower-sessions --example axum_sessions -- 10.0.0.1:11211 10.0.0.2:11211
//! MEMHA_NODES=10.0.0.1:11211,10.0.0.2:11211 cargo run -p memha-session --features tower-sessions --example axum_sessions
//! ```
//!
//! Then (it listens on `MEMHA_LISTEN`, default 127.0.0.1:3000):
//!
//! ```sh
//! curl -c jar -b jar localhost:3000/                                # user=- visits=1
//! curl -c jar -b jar -d user=alice -d password=wonderland localhost:3000/login
//! curl -c jar -b jar localhost:3000/                                # user=alice visits=2
//! curl -c jar -b jar -X POST localhost:3000/logout
//! ```
//!
//! Every session is written to every healthy node: kill one of them and
//! you stay logged in.

use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Form, Router};
use memha_client::Client;
use memha_session::TowerSessionStore;
use tower_sessions::cookie::time;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

/// The demo's users and their passwords.
const USERS: [(&str, &str); 2] = [("alice", "wonderland"), ("bob", "builder")];
/// The session entry naming the logged-in user.
const USER: &str = "user";
/// The session entry counting the visits of `/`.
const VISITS: &str = "visits";

/// The site: `GET /` counts a visit and says who you are, `POST /login`
/// (form `user`, `password`) logs in, `POST /logout` logs out. Sessions
/// last an hour of inactivity.
pub(crate) fn app(store: TowerSessionStore) -> Router {
    let sessions = SessionManagerLayer::new(store)
        // The demo speaks plain HTTP; in production keep cookies Secure.
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(time::Duration::hours(1)));
    Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .layer(sessions)
}

/// A session store failure: logged, answered with a 500.
fn failed(err: tower_sessions::session::Error) -> StatusCode {
    eprintln!("session store: {err}");
    StatusCode::INTERNAL_SERVER_ERROR
}

/// Counts the visit and answers `user=<name or -> visits=<n>`.
async fn home(session: Session) -> Result<String, StatusCode> {
    let user: Option<String> = session.get(USER).await.map_err(failed)?;
    let visits = session
        .get::<u64>(VISITS)
        .await
        .map_err(failed)?
        .unwrap_or(0)
        + 1;
    session.insert(VISITS, visits).await.map_err(failed)?;
    Ok(format!(
        "user={} visits={visits}\n",
        user.as_deref().unwrap_or("-")
    ))
}

/// The login form.
#[derive(serde::Deserialize)]
struct Login {
    user: String,
    password: String,
}

async fn login(session: Session, Form(form): Form<Login>) -> Result<String, StatusCode> {
    let known = USERS
        .iter()
        .any(|(user, password)| *user == form.user && *password == form.password);
    if !known {
        return Err(StatusCode::UNAUTHORIZED);
    }
    // A new session id at login, so an id planted before it is worthless.
    session.cycle_id().await.map_err(failed)?;
    session.insert(USER, &form.user).await.map_err(failed)?;
    Ok(format!("logged in as {}\n", form.user))
}

async fn logout(session: Session) -> Result<&'static str, StatusCode> {
    // Deletes the session from every node and expires the cookie.
    session.flush().await.map_err(failed)?;
    Ok("logged out\n")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Without addresses, start local nodes; they stop with the program.
    let (nodes, _local) = memha_tests::example_nodes(3)?;

    let client = Client::builder()
        .nodes(nodes)
        .timeout(Duration::from_millis(500))
        .build()
        .await?;
    let store = TowerSessionStore::new(client);

    let listen = std::env::var("MEMHA_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(store)).await?;
    Ok(())
}
