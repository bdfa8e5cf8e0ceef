//! The statements the load signs, as the parties require them: the admin signs each key's
//! policy (the initiator below, one approval), and the initiator approves each signing.
//! Both keys are files (`mpcctl signing-key new`), named by flags or the variables mpcctl
//! reads.

use std::path::PathBuf;

use anyhow::Context;
use ed25519_dalek::SigningKey;
use mpc_client::authority::{self, PolicyTerms};
use mpc_proto::v1 as pb;

#[derive(Debug, Clone, clap::Args)]
pub struct AdminKeyFile {
    /// The admin's signing key file: signs the policies of the load's keys.
    #[arg(long, env = "MPC_ADMIN_KEY")]
    pub admin_key: PathBuf,
}

#[derive(Debug, Clone, clap::Args)]
pub struct InitiatorKeyFile {
    /// The initiator's signing key file: approves every signing.
    #[arg(long, env = "MPC_INITIATOR_KEY")]
    pub initiator_key: PathBuf,
}

/// The initiator's key, able to approve signing requests.
#[derive(Clone)]
pub struct Initiator {
    key: SigningKey,
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initiator")
            .field("public_key", &hex::encode(self.public_key()))
            .finish_non_exhaustive()
    }
}

impl Initiator {
    pub fn load(file: &InitiatorKeyFile) -> anyhow::Result<Self> {
        let key = authority::load_signing_key(&file.initiator_key)
            .context("the initiator's signing key (--initiator-key or MPC_INITIATOR_KEY)")?;
        Ok(Self { key })
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Adds this initiator's approval, valid until `not_after_ms`, to a signing request of a
    /// message (which must carry its request id: the approval names it).
    pub fn approve(
        &self,
        mut req: pb::CreateSigningRequest,
        not_after_ms: u64,
    ) -> anyhow::Result<pb::CreateSigningRequest> {
        authority::approve_signing(&mut req, &self.key, not_after_ms)?;
        Ok(req)
    }
}

/// The admin's key, able to sign key policies.
pub struct Admin {
    key: SigningKey,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field(
                "public_key",
                &hex::encode(self.key.verifying_key().to_bytes()),
            )
            .finish_non_exhaustive()
    }
}

impl Admin {
    pub fn load(file: &AdminKeyFile) -> anyhow::Result<Self> {
        let key = authority::load_signing_key(&file.admin_key)
            .context("the admin's signing key (--admin-key or MPC_ADMIN_KEY)")?;
        Ok(Self { key })
    }

    /// Signs the policy of exactly this keygen request: `initiator` alone approves, once.
    pub fn endorse(
        &self,
        mut req: pb::CreateKeygenRequest,
        initiator: &Initiator,
    ) -> anyhow::Result<pb::CreateKeygenRequest> {
        req.policy = Some(authority::sign_policy(
            &self.key,
            PolicyTerms {
                key_id: req.key_id.clone(),
                scheme: req.scheme.clone(),
                threshold: u16::try_from(req.threshold).context("threshold: too large")?,
                parties: req.parties.clone(),
                initiators: vec![initiator.public_key()],
                approvals_needed: 1,
            },
        ));
        Ok(req)
    }
}

pub use authority::expiry_after;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approvals_verify_over_the_request_they_were_made_for() -> anyhow::Result<()> {
        let initiator = Initiator {
            key: SigningKey::from_bytes(&[3; 32]),
        };
        let req = pb::CreateSigningRequest {
            key_id: "k1".into(),
            message: vec![1, 2, 3],
            request_id: "r1".into(),
            ..Default::default()
        };
        let approved = initiator.approve(req.clone(), 1_000)?;
        assert_eq!(approved.approvals.len(), 1);
        assert_eq!(approved.not_after_ms, 1_000);
        // Deterministic: a retry re-made from the history is the same request.
        assert_eq!(initiator.approve(req.clone(), 1_000)?, approved);
        assert!(initiator
            .approve(
                pb::CreateSigningRequest {
                    request_id: String::new(),
                    ..req
                },
                1_000
            )
            .is_err());
        Ok(())
    }
}
