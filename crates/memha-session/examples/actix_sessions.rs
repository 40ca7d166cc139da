//! A small actix-web site whose sessions live in memcached through memha:
//! log in, count your visits, log out.
//!
//! ```sh
//! # Without addresses, it starts 3 local memcached nodes (memcached must be installed):
//! cargo run -p memha-session --features actix-session --example actix_sessions
//! # Your own nodes:
//! cargo run -p memha-session --features actix-session --example actix_sessions -- 10.0.0.1:11211 10.0.0.2:11211
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

use actix_session::config::PersistentSession;
use actix_session::storage::SessionStore;
use actix_session::{Session, SessionMiddleware};
use actix_web::cookie::{time, Key};
use actix_web::{web, App, HttpResponse, HttpServer};
use memha_client::Client;
use memha_session::ActixSessionStore;

/// The demo's users and their passwords.
const USERS: [(&str, &str); 2] = [("alice", "wonderland"), ("bob", "builder")];
/// The session entry naming the logged-in user.
const USER: &str = "user";
/// The session entry counting the visits of `/`.
const VISITS: &str = "visits";

/// The session middleware: sessions in `store`, cookies encrypted with
/// `key`, an hour long.
pub(crate) fn sessions<S: SessionStore>(store: S, key: Key) -> SessionMiddleware<S> {
    SessionMiddleware::builder(store, key)
        // The demo speaks plain HTTP; in production keep cookies Secure.
        .cookie_secure(false)
        .session_lifecycle(PersistentSession::default().session_ttl(time::Duration::hours(1)))
        .build()
}

/// The site: `GET /` counts a visit and says who you are, `POST /login`
/// (form `user`, `password`) logs in, `POST /logout` logs out.
pub(crate) fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/", web::get().to(home))
        .route("/login", web::post().to(login))
        .route("/logout", web::post().to(logout));
}

/// Counts the visit and answers `user=<name or -> visits=<n>`.
async fn home(session: Session) -> actix_web::Result<String> {
    let user: Option<String> = session.get(USER)?;
    let visits = session.get::<u64>(VISITS)?.unwrap_or(0) + 1;
    session.insert(VISITS, visits)?;
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

async fn login(session: Session, form: web::Form<Login>) -> actix_web::Result<HttpResponse> {
    let known = USERS
        .iter()
        .any(|(user, password)| *user == form.user && *password == form.password);
    if !known {
        return Ok(HttpResponse::Unauthorized().finish());
    }
    // A new session key at login, so a key planted before it is worthless.
    session.renew();
    session.insert(USER, &form.user)?;
    Ok(HttpResponse::Ok().body(format!("logged in as {}\n", form.user)))
}

async fn logout(session: Session) -> &'static str {
    // Deletes the session from every node and expires the cookie.
    session.purge();
    "logged out\n"
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Without addresses, start local nodes; they stop with the program.
    let (nodes, _local) = memha_tests::example_nodes(3)?;

    let client = Client::builder()
        .nodes(nodes)
        .timeout(Duration::from_millis(500))
        .build()
        .await?;
    let store = ActixSessionStore::new(client);
    // Cookies are encrypted with this key; a real site loads a stable one.
    let key = Key::generate();

    let listen = std::env::var("MEMHA_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let server = HttpServer::new(move || {
        App::new()
            .wrap(sessions(store.clone(), key.clone()))
            .configure(routes)
    })
    .bind(&listen)?;
    for addr in server.addrs() {
        println!("listening on http://{addr}");
    }
    server.run().await?;
    Ok(())
}
