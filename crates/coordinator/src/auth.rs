//! Who is calling, and whether they may: authentication from the TLS client certificate or
//! a bearer token, and one table that gives every gRPC method its rule.
//!
//! [`AuthLayer`] wraps the public gRPC server. Before a request reaches a service (before a
//! byte of its message is decoded) it finds the caller's [`Principal`] and checks the
//! method's [`Rule`]; a method missing from the table is refused, so a new RPC is denied until
//! someone decides who may call it. Services read the principal from the request's
//! extensions for the audit trail and for the checks that need the request itself (which key
//! a signer signs with, which party id a party speaks for).
//!
//! The Raft listener has its own rule ([`raft_peer_allowed`]): mutual TLS, and a certificate
//! naming a coordinator of the current membership.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use mpc_raft_store::model::KeyRecord;
use mpc_raft_store::StateReader;
use mpc_tls::{PeerInfo, Role};
use mpc_types::{token, AccessRole};
use subtle::ConstantTimeEq;
use tonic::Status;

use crate::node::{now_ms, Consistency, Coordinator};

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An operator or application, by client certificate or API token.
    Client {
        name: String,
        credential: Credential,
        role: AccessRole,
        scope: KeyScope,
    },
    /// A party node, by its certificate; it may speak only for its own party id.
    Party { party_id: String },
    /// A DVN relayer, by its certificate; it writes to the job book in its own name.
    Relayer { name: String },
    /// Any caller of a node started with `--insecure-plaintext`.
    Insecure,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Certificate,
    Token { token_id: String },
}

/// Which keys a signer may sign with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyScope {
    Any,
    /// Key ids, and key tags written `tag:name=value`.
    Only(Vec<String>),
}

impl KeyScope {
    fn allows(&self, key_id: &str, key: Option<&KeyRecord>) -> bool {
        match self {
            KeyScope::Any => true,
            KeyScope::Only(grants) => grants.iter().any(|g| match g.strip_prefix("tag:") {
                Some(tag) => {
                    let (name, value) = tag.split_once('=').unwrap_or((tag, ""));
                    key.is_some_and(|k| k.tags.get(name).is_some_and(|v| v == value))
                }
                None => g == key_id,
            }),
        }
    }
}

impl Principal {
    /// How the audit log and the logs name it. Never holds a secret.
    pub fn audit_name(&self) -> String {
        match self {
            Principal::Client {
                name,
                credential: Credential::Certificate,
                ..
            } => format!("client:{name}"),
            Principal::Client {
                name,
                credential: Credential::Token { token_id },
                ..
            } => format!("token:{name}:{token_id}"),
            Principal::Party { party_id } => format!("party:{party_id}"),
            Principal::Relayer { name } => format!("dvn:{name}"),
            Principal::Insecure => "insecure".into(),
        }
    }

    /// The client role it holds (an insecure caller is an admin); parties hold none.
    pub fn role(&self) -> Option<AccessRole> {
        match self {
            Principal::Client { role, .. } => Some(*role),
            Principal::Insecure => Some(AccessRole::Admin),
            Principal::Party { .. } | Principal::Relayer { .. } => None,
        }
    }

    /// Signing needs the signer role and a grant for the key (`key` is its record when it
    /// exists, for tag grants). Admins sign with any key.
    pub fn may_sign_with(&self, key_id: &str, key: Option<&KeyRecord>) -> bool {
        match self {
            Principal::Insecure => true,
            Principal::Client { role, scope, .. } => match role {
                AccessRole::Admin => true,
                AccessRole::Signer => scope.allows(key_id, key),
                _ => false,
            },
            Principal::Party { .. } | Principal::Relayer { .. } => false,
        }
    }

    /// The principal a service found in its request's extensions. A missing one is a bug
    /// (a service mounted without [`AuthLayer`]): refuse rather than guess.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Principal, Status> {
        request
            .extensions()
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| Status::internal("request reached a service without authentication"))
    }

    /// Refuses unless this principal is the party `party_id`.
    pub fn require_party(&self, party_id: &str) -> Result<(), Status> {
        match self {
            Principal::Party { party_id: own } if own == party_id => Ok(()),
            Principal::Insecure => Ok(()),
            Principal::Party { party_id: own } => Err(Status::permission_denied(format!(
                "this connection's certificate names party {own:?}, not {party_id:?}"
            ))),
            _ => Err(Status::permission_denied(
                "only a party's own certificate may speak for it",
            )),
        }
    }
}

/// What a method demands of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Health checks and reflection: no credential.
    Open,
    /// Any authenticated principal.
    Authenticated,
    /// A client role that includes this one ([`AccessRole::includes`]).
    Role(AccessRole),
    /// A party's certificate (the service checks which party).
    Party,
    /// A DVN relayer's certificate.
    Relayer,
    /// A relayer's certificate, or a client role that includes this one.
    RelayerOr(AccessRole),
}

/// The rule of every method the public listener serves; `None` (deny) for anything else.
pub fn rule(path: &str) -> Option<Rule> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    use AccessRole::*;
    let rule = match (service, method) {
        ("grpc.health.v1.Health", _) => Rule::Open,
        ("grpc.reflection.v1.ServerReflection", _) => Rule::Open,
        ("mpc.v1.Sessions", "CreateKeygen") => Rule::Role(Operator),
        // The service checks the key against the signer's grants.
        ("mpc.v1.Sessions", "CreateSigning") => Rule::Role(Signer),
        ("mpc.v1.Sessions", "GetSession" | "ListSessions" | "WatchSession") => Rule::Role(Reader),
        ("mpc.v1.Keys", "GetKey" | "ListKeys") => Rule::Role(Reader),
        ("mpc.v1.Keys", "UpdateKey") => Rule::Role(Operator),
        ("mpc.v1.Keys", "SetPolicy") => Rule::Role(Admin),
        ("mpc.v1.Cluster", "GetStatus") => Rule::Role(Reader),
        ("mpc.v1.Cluster", "AddLearner" | "ChangeMembership") => Rule::Role(Admin),
        ("mpc.v1.PartyGateway", "Register" | "Attach") => Rule::Party,
        ("mpc.v1.PartyGateway", "GetParty" | "ListParties") => Rule::Role(Reader),
        ("mpc.v1.PartyGateway", "Enroll") => Rule::Role(Admin),
        ("mpc.v1.Access", "CreateToken" | "ListTokens" | "RevokeToken") => Rule::Role(Admin),
        ("mpc.v1.Access", "ListAudit") => Rule::Role(Reader),
        ("mpc.v1.Access", "WhoAmI") => Rule::Authenticated,
        (
            "mpc.v1.Relay",
            "Discover" | "RecordVerdict" | "Claim" | "RecordSubmission" | "RecordOutcome",
        ) => Rule::Relayer,
        ("mpc.v1.Relay", "GetCursor" | "GetJob" | "ListJobs" | "GetStatus") => {
            Rule::RelayerOr(Reader)
        }
        _ => return None,
    };
    Some(rule)
}

/// Finds principals: from the verified client certificate, or from a bearer token looked up
/// in the replicated state.
#[derive(Debug)]
pub struct Authenticator {
    reader: StateReader,
    limiter: Arc<crate::limits::Limiter>,
    node: Coordinator,
    insecure: bool,
    /// Read barriers for token ids not (yet) known here.
    catch_ups: tokio::sync::Semaphore,
}

/// Read barriers on behalf of unknown token ids that may run at once.
const MAX_TOKEN_CATCH_UPS: usize = 4;

impl Authenticator {
    pub fn new(node: Coordinator) -> Self {
        Self {
            reader: node.reader().clone(),
            limiter: node.limiter().clone(),
            insecure: node.config().insecure_plaintext,
            node,
            catch_ups: tokio::sync::Semaphore::new(MAX_TOKEN_CATCH_UPS),
        }
    }

    /// The caller of a request with these headers over this connection. A token, when sent,
    /// is the credential (a client may hold a transport certificate and act through a
    /// narrower token); otherwise the certificate.
    pub async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        peer: Option<&PeerInfo>,
    ) -> Result<Principal, Status> {
        if self.insecure {
            return Ok(Principal::Insecure);
        }
        if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            let bearer = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or_else(|| {
                    Status::unauthenticated("authorization: expected \"Bearer <token>\"")
                })?;
            return self.token(bearer.trim()).await;
        }
        let Some(identity) = peer.and_then(|p| p.identity.as_ref()) else {
            return Err(Status::unauthenticated(
                "no credential: present a client certificate of the cluster CA or a bearer token",
            ));
        };
        match identity.role {
            Role::Client => Ok(Principal::Client {
                name: identity.name.clone(),
                credential: Credential::Certificate,
                role: identity.grant.unwrap_or(AccessRole::Reader),
                scope: KeyScope::Any,
            }),
            Role::Party => Ok(Principal::Party {
                party_id: identity.name.clone(),
            }),
            Role::Dvn => Ok(Principal::Relayer {
                name: identity.name.clone(),
            }),
            Role::Coordinator => Err(Status::permission_denied(format!(
                "a {} certificate has no rights on the public API",
                identity.role
            ))),
        }
    }

    async fn token(&self, presented: &str) -> Result<Principal, Status> {
        let invalid = || Status::unauthenticated("the bearer token is not valid");
        let token_id = token::id_of(presented).ok_or_else(invalid)?;
        let read = || async {
            self.reader
                .token(token_id)
                .await
                .map_err(|e| Status::internal(format!("reading token {token_id}: {e}")))
        };
        let record = match read().await? {
            Some(record) => record,
            // A token made a moment ago may not be applied here yet: catch up with the
            // leader's commit index once, then decide. Unknown ids cost a leader round trip,
            // so only a few such catch-ups run at once; the rest are refused at once.
            None => {
                let Ok(_permit) = self.catch_ups.try_acquire() else {
                    return Err(invalid());
                };
                self.node.read_barrier(Consistency::Linearizable).await?;
                read().await?.ok_or_else(invalid)?
            }
        };
        let hash = token::token_hash(presented);
        if !bool::from(hash.ct_eq(&record.secret_hash)) {
            return Err(invalid());
        }
        // Only the holder of the secret gets here: telling why helps them and no one else.
        if record.revoked_at_ms.is_some() {
            return Err(Status::unauthenticated(format!(
                "token {token_id} was revoked"
            )));
        }
        if record.expires_at_ms.is_some_and(|t| t <= now_ms()) {
            return Err(Status::unauthenticated(format!("token {token_id} expired")));
        }
        Ok(Principal::Client {
            name: record.name,
            credential: Credential::Token {
                token_id: record.token_id,
            },
            role: record.role,
            scope: if record.keys.is_empty() {
                KeyScope::Any
            } else {
                KeyScope::Only(record.keys)
            },
        })
    }

    /// The principal of a request to `path`, if its rule lets it through.
    pub async fn authorize(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        peer: Option<&PeerInfo>,
    ) -> Result<Option<Principal>, Status> {
        let Some(rule) = rule(path) else {
            return Err(Status::permission_denied(format!(
                "{path}: no rule grants this method"
            )));
        };
        if rule == Rule::Open {
            return Ok(None);
        }
        let principal = self.authenticate(headers, peer).await?;
        let allowed = match (rule, &principal) {
            (_, Principal::Insecure) | (Rule::Open | Rule::Authenticated, _) => true,
            (Rule::Party, Principal::Party { .. }) => true,
            (Rule::Relayer | Rule::RelayerOr(_), Principal::Relayer { .. }) => true,
            (Rule::Role(needed) | Rule::RelayerOr(needed), p) => {
                p.role().is_some_and(|r| r.includes(needed))
            }
            (Rule::Party | Rule::Relayer, _) => false,
        };
        if !allowed {
            metrics::counter!("mpc_auth_denied_total").increment(1);
            let needed = match rule {
                Rule::Role(r) => format!("the {r} role"),
                Rule::RelayerOr(r) => format!("a DVN relayer certificate or the {r} role"),
                Rule::Relayer => "a DVN relayer certificate".into(),
                _ => "a party certificate".into(),
            };
            return Err(Status::permission_denied(format!(
                "{} may not call {path}: it needs {needed}",
                principal.audit_name()
            )));
        }
        Ok(Some(principal))
    }
}

/// The Raft listener's rule: the peer's certificate (already verified against the cluster
/// CA by mutual TLS) must name a coordinator that is a voter or learner of `membership`; a
/// node with no membership yet (a pristine node waiting to be added) takes any coordinator,
/// since only the leader of the group it is joining dials it.
pub fn raft_peer_allowed(
    peer: Option<&PeerInfo>,
    is_member: impl Fn(u64) -> bool,
    has_membership: bool,
) -> Result<(), Status> {
    let identity = peer.and_then(|p| p.identity.as_ref()).ok_or_else(|| {
        Status::unauthenticated("the Raft port takes coordinators' certificates only")
    })?;
    if identity.role != Role::Coordinator {
        return Err(Status::permission_denied(format!(
            "{identity} may not use the Raft port"
        )));
    }
    let id: u64 = identity
        .name
        .parse()
        .map_err(|_| Status::permission_denied(format!("{identity} has no numeric node id")))?;
    if has_membership && !is_member(id) {
        return Err(Status::permission_denied(format!(
            "coordinator {id} is not a member of this group"
        )));
    }
    Ok(())
}

/// Tower layer of the public gRPC server: see the module docs.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    pub fn new(auth: Authenticator) -> Self {
        Self {
            auth: Arc::new(auth),
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower::Service<http::Request<tonic::body::Body>> for AuthService<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        // The clone that was made ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            let decision = auth
                .authorize(
                    req.uri().path(),
                    req.headers(),
                    req.extensions().get::<PeerInfo>(),
                )
                .await;
            match decision {
                Ok(principal) => {
                    // Held until the service answered (a stream's body then runs on its own).
                    let mut _permit = None;
                    if let Some(principal) = principal {
                        if principal != Principal::Insecure {
                            match auth.limiter.admit(&principal.audit_name()) {
                                Ok(permit) => _permit = Some(permit),
                                Err(status) => return Ok(status.into_http()),
                            }
                        }
                        req.extensions_mut().insert(principal);
                    }
                    inner.call(req).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_public_method_has_a_rule_and_unknown_ones_are_denied() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(mpc_proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut checked = 0;
        for file in set.file {
            let package = file.package().to_owned();
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/{package}.{}/{}", service.name(), method.name());
                    let r = rule(&path);
                    if package == "mpc.v1" {
                        assert!(r.is_some(), "{path} has no rule");
                        assert_ne!(r, Some(Rule::Open), "{path} is open");
                        checked += 1;
                    } else {
                        // The Raft service has its own listener and is never served here.
                        assert_eq!(r, None, "{path}");
                    }
                }
            }
        }
        assert!(checked >= 19, "only {checked} methods found");
        assert_eq!(rule("/mpc.v1.Sessions/DeleteEverything"), None);
        assert_eq!(rule("garbage"), None);
    }

    #[test]
    fn signers_sign_only_with_granted_keys_or_tags() {
        let signer = |grants: &[&str]| Principal::Client {
            name: "bot".into(),
            credential: Credential::Token {
                token_id: "0123456789abcdef".into(),
            },
            role: AccessRole::Signer,
            scope: KeyScope::Only(grants.iter().map(|g| g.to_string()).collect()),
        };
        let key = |id: &str, tags: &[(&str, &str)]| KeyRecord {
            key_id: id.into(),
            scheme: mpc_raft_store::model::Scheme::SchnorrEd25519,
            threshold: 2,
            parties: vec![],
            public_key: vec![],
            address: None,
            status: mpc_raft_store::model::KeyStatus::Active,
            description: String::new(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            keygen_session_id: String::new(),
            created_at_ms: 0,
            updated_at_ms: 0,
            policy: mpc_raft_store::model::Endorsed::new(
                &ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
                mpc_raft_store::model::KeyPolicy {
                    key_id: id.into(),
                    scheme: "schnorr-ed25519".into(),
                    threshold: 2,
                    parties: vec![],
                    initiators: vec![],
                    approvals_needed: 1,
                    version: 1,
                },
            ),
        };
        let hot = key("k1", &[("wallet", "hot")]);
        let cold = key("k2", &[("wallet", "cold")]);
        assert!(signer(&["k1"]).may_sign_with("k1", Some(&hot)));
        assert!(!signer(&["k1"]).may_sign_with("k2", Some(&cold)));
        assert!(signer(&["tag:wallet=hot"]).may_sign_with("k1", Some(&hot)));
        assert!(!signer(&["tag:wallet=hot"]).may_sign_with("k2", Some(&cold)));
        assert!(!signer(&["tag:wallet=hot"]).may_sign_with("k9", None));
        let operator = Principal::Client {
            name: "ops".into(),
            credential: Credential::Certificate,
            role: AccessRole::Operator,
            scope: KeyScope::Any,
        };
        assert!(!operator.may_sign_with("k1", Some(&hot)));
        assert!(!Principal::Party {
            party_id: "party-1".into()
        }
        .may_sign_with("k1", Some(&hot)));
    }

    #[test]
    fn the_raft_port_takes_members_only() {
        let peer = |role: Role, name: &str| PeerInfo {
            remote_addr: None,
            identity: Some(mpc_tls::Identity::new(role, name, None).unwrap()),
        };
        let members = |id: u64| (1..=3).contains(&id);
        assert!(raft_peer_allowed(Some(&peer(Role::Coordinator, "2")), members, true).is_ok());
        assert!(raft_peer_allowed(Some(&peer(Role::Coordinator, "9")), members, true).is_err());
        assert!(raft_peer_allowed(Some(&peer(Role::Coordinator, "9")), members, false).is_ok());
        assert!(raft_peer_allowed(Some(&peer(Role::Party, "party-1")), members, true).is_err());
        assert!(raft_peer_allowed(Some(&peer(Role::Party, "party-1")), members, false).is_err());
        assert!(raft_peer_allowed(None, members, true).is_err());
    }
}
