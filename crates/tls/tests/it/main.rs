#![allow(clippy::unwrap_used, clippy::expect_used)]
//! TLS between real sockets on loopback: who gets through and who does not.

use std::path::Path;
use std::time::Duration;

use mpc_tls::pki::{self, DEFAULT_LEAF_VALIDITY};
use mpc_tls::{ClientAuth, ClientTls, Identity, PeerInfo, Reload, Role, ServerTls, TlsFiles};
use mpc_types::AccessRole;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

fn issue(dir: &Path, role: Role, name: &str, grant: Option<AccessRole>) -> pki::Issued {
    let id = Identity::new(role, name, grant).unwrap();
    let hosts = if role == Role::Coordinator {
        vec!["localhost".to_owned(), "127.0.0.1".to_owned()]
    } else {
        Vec::new()
    };
    pki::issue(dir, &id, &hosts, DEFAULT_LEAF_VALIDITY).unwrap()
}

/// A health server on a loopback port whose requests record the peer it saw.
async fn serve(tls: Option<ServerTls>) -> (String, tokio::sync::mpsc::UnboundedReceiver<PeerInfo>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let (seen_tx, seen) = tokio::sync::mpsc::unbounded_channel();
    let record = move |req: tonic::Request<()>| {
        if let Some(info) = req.extensions().get::<PeerInfo>() {
            let _ = seen_tx.send(info.clone());
        }
        Ok(req)
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(tonic::service::InterceptorLayer::new(record))
            .add_service(health)
            .serve_with_incoming(mpc_tls::incoming(listener, tls)),
    );
    (addr, seen)
}

async fn check(addr: &str, tls: Option<&ClientTls>) -> Result<(), tonic::Status> {
    let channel = mpc_tls::channel(addr, tls, |e| e.connect_timeout(Duration::from_secs(2)))
        .map_err(|e| tonic::Status::internal(e.to_string()))?;
    let mut client = HealthClient::new(channel);
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request.set_timeout(Duration::from_secs(3));
    client.check(request).await.map(|_| ())
}

struct Fixture {
    _dir: tempfile::TempDir,
    pki: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    pki::init(&pki).unwrap();
    Fixture { _dir: dir, pki }
}

fn server_tls(pki: &Path, auth: ClientAuth) -> ServerTls {
    let leaf = issue(pki, Role::Coordinator, "1", None);
    ServerTls::load(
        TlsFiles::new(pki::ca_cert_path(pki), leaf.cert, leaf.key),
        auth,
    )
    .unwrap()
}

#[tokio::test]
async fn mutual_tls_names_the_client_and_refuses_strangers() {
    let f = fixture();
    let (addr, mut seen) = serve(Some(server_tls(&f.pki, ClientAuth::Required))).await;
    let party = issue(&f.pki, Role::Party, "party-1", None);
    let ca = pki::ca_cert_path(&f.pki);
    let with_cert = ClientTls::load(ca.clone(), Some((party.cert, party.key))).unwrap();
    check(&addr, Some(&with_cert)).await.unwrap();
    let peer = seen.recv().await.unwrap();
    assert_eq!(
        peer.identity,
        Some(Identity::new(Role::Party, "party-1", None).unwrap())
    );

    // No certificate on a mutual-TLS listener.
    let anonymous = ClientTls::load(ca, None).unwrap();
    assert!(check(&addr, Some(&anonymous)).await.is_err());
    // Plain text to a TLS listener.
    assert!(check(&addr, None).await.is_err());
    // A certificate of another CA.
    let other = fixture();
    let stranger = issue(&other.pki, Role::Coordinator, "2", None);
    let foreign = ClientTls::load(
        pki::ca_cert_path(&f.pki),
        Some((stranger.cert, stranger.key)),
    )
    .unwrap();
    assert!(check(&addr, Some(&foreign)).await.is_err());
    assert!(
        seen.try_recv().is_err(),
        "a refused client reached the service"
    );
}

#[tokio::test]
async fn optional_client_auth_lets_anonymous_callers_in_without_identity() {
    let f = fixture();
    let (addr, mut seen) = serve(Some(server_tls(&f.pki, ClientAuth::Optional))).await;
    let anonymous = ClientTls::load(pki::ca_cert_path(&f.pki), None).unwrap();
    check(&addr, Some(&anonymous)).await.unwrap();
    assert_eq!(seen.recv().await.unwrap().identity, None);
}

#[tokio::test]
async fn clients_refuse_a_server_that_is_not_a_coordinator() {
    let f = fixture();
    // A party's certificate, even one that names the right host, is not a coordinator's.
    let id = Identity::new(Role::Party, "party-9", None).unwrap();
    let leaf = pki::issue(&f.pki, &id, &["127.0.0.1".into()], DEFAULT_LEAF_VALIDITY).unwrap();
    let tls = ServerTls::load(
        TlsFiles::new(pki::ca_cert_path(&f.pki), leaf.cert, leaf.key),
        ClientAuth::Optional,
    )
    .unwrap();
    let (addr, _seen) = serve(Some(tls)).await;
    let client = ClientTls::load(pki::ca_cert_path(&f.pki), None).unwrap();
    let err = check(&addr, Some(&client)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
}

#[tokio::test]
async fn reloaded_files_change_who_gets_in() {
    let f = fixture();
    let server = server_tls(&f.pki, ClientAuth::Required);
    let (addr, _seen) = serve(Some(server.clone())).await;
    let old_party = issue(&f.pki, Role::Party, "party-1", None);
    let old = ClientTls::load(
        pki::ca_cert_path(&f.pki),
        Some((old_party.cert, old_party.key)),
    )
    .unwrap();
    check(&addr, Some(&old)).await.unwrap();

    // The server's files are replaced by those of another CA, then reloaded.
    let other = fixture();
    let leaf = issue(&other.pki, Role::Coordinator, "1", None);
    let own = pki::leaf_paths(&f.pki, Role::Coordinator, "1");
    std::fs::copy(pki::ca_cert_path(&other.pki), pki::ca_cert_path(&f.pki)).unwrap();
    std::fs::copy(&leaf.cert, &own.cert).unwrap();
    std::fs::copy(&leaf.key, &own.key).unwrap();
    server.reload().unwrap();

    assert!(check(&addr, Some(&old)).await.is_err());
    let new_party = issue(&other.pki, Role::Party, "party-1", None);
    let new = ClientTls::load(
        pki::ca_cert_path(&other.pki),
        Some((new_party.cert, new_party.key)),
    )
    .unwrap();
    check(&addr, Some(&new)).await.unwrap();
}
