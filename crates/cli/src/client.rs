//! Credentials from flags and the environment, and the leader-following client.

use std::path::PathBuf;

pub use mpc_client::{ClientError, Credentials, Endpoints};

/// How mpcctl proves who it is: every flag has its `MPC_*` variable, as
/// `.local-cluster/admin.env` sets them.
#[derive(Clone, clap::Args)]
pub struct CredentialArgs {
    /// The cluster CA certificate (PEM).
    #[arg(long, env = "MPC_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// A client certificate of the cluster CA (PEM).
    #[arg(long, env = "MPC_CLIENT_CERT", global = true)]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "MPC_CLIENT_KEY", global = true)]
    pub client_key: Option<PathBuf>,
    /// An API token (`mpcctl token create`), sent as a bearer token.
    #[arg(long, env = "MPC_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Plain text, for a cluster started with --insecure-plaintext only.
    #[arg(long, env = "MPC_INSECURE_PLAINTEXT", global = true,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure_plaintext: bool,
}

impl std::fmt::Debug for CredentialArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialArgs")
            .field("ca_cert", &self.ca_cert)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("insecure_plaintext", &self.insecure_plaintext)
            .finish()
    }
}

impl CredentialArgs {
    pub fn credentials(&self) -> Result<Credentials, ClientError> {
        if self.insecure_plaintext {
            return Ok(Credentials::insecure_plaintext());
        }
        let token = self.token.clone().map(zeroize::Zeroizing::new);
        Credentials::from_parts(
            self.ca_cert.clone(),
            self.client_cert.clone(),
            self.client_key.clone(),
            token.as_deref().map(String::as_str),
        )
    }
}
