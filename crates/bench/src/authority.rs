//! What the benchmarks sign as a real admin and initiator would: key policies for keygens,
//! approvals for signings, and enrolments of the party ids a Raft benchmark names without
//! running them. The keys are files (`mpcctl signing-key new`), as mpcctl reads them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ed25519_dalek::SigningKey;
use mpc_client::authority::{self, PolicyTerms};
use mpc_client::ClientChannel;
use mpc_proto::v1 as pb;
use mpc_proto::v1::party_gateway_client::PartyGatewayClient;

#[derive(Debug, Clone, clap::Args)]
pub struct KeyFiles {
    /// The admin's signing key file: signs key policies and enrolments (target mpc).
    #[arg(long, env = "MPC_ADMIN_KEY")]
    pub admin_key: Option<PathBuf>,
    /// The initiator's signing key file: named by every key policy, approves signings.
    #[arg(long, env = "MPC_INITIATOR_KEY")]
    pub initiator_key: Option<PathBuf>,
}

/// The admin's and the initiator's keys.
pub struct Signers {
    admin: SigningKey,
    initiator: SigningKey,
}

impl std::fmt::Debug for Signers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signers")
            .field("admin", &hex::encode(self.admin.verifying_key().to_bytes()))
            .field(
                "initiator",
                &hex::encode(self.initiator.verifying_key().to_bytes()),
            )
            .finish_non_exhaustive()
    }
}

impl Signers {
    pub fn load(files: &KeyFiles) -> anyhow::Result<Self> {
        let admin = files
            .admin_key
            .as_deref()
            .context("an admin signing key is needed: --admin-key FILE or MPC_ADMIN_KEY")?;
        let initiator = files.initiator_key.as_deref().context(
            "an initiator signing key is needed: --initiator-key FILE or MPC_INITIATOR_KEY",
        )?;
        Ok(Self {
            admin: authority::load_signing_key(admin)?,
            initiator: authority::load_signing_key(initiator)?,
        })
    }

    /// The admin's policy for a keygen: the initiator alone approves signings, once each.
    pub fn policy(
        &self,
        key_id: &str,
        scheme: &str,
        threshold: u32,
        parties: &[String],
    ) -> anyhow::Result<pb::EndorsedKeyPolicy> {
        Ok(authority::sign_policy(
            &self.admin,
            PolicyTerms {
                key_id: key_id.to_owned(),
                scheme: scheme.to_owned(),
                threshold: u16::try_from(threshold).context("threshold: too large")?,
                parties: parties.to_vec(),
                initiators: vec![self.initiator.verifying_key().to_bytes()],
                approvals_needed: 1,
            },
        ))
    }

    /// Adds the initiator's approval, valid for five minutes, to a signing request (which
    /// must carry its request id).
    pub fn approve(
        &self,
        mut req: pb::CreateSigningRequest,
    ) -> anyhow::Result<pb::CreateSigningRequest> {
        let not_after_ms = authority::expiry_after(Duration::from_secs(300));
        authority::approve_signing(&mut req, &self.initiator, not_after_ms)?;
        Ok(req)
    }

    /// Enrols each of `party_ids` not yet enrolled, with a new identity nobody holds (a
    /// random Ed25519 key and random bytes for the encryption key): keygens may then name
    /// them, and their sessions are created but never run. Retries on every endpoint for up
    /// to 30 s (a cluster that just started may still be electing).
    pub async fn enrol_absent(
        &self,
        channels: &[ClientChannel],
        party_ids: &[&str],
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        let mut i = 0usize;
        while Instant::now() < deadline {
            let mut gateway = PartyGatewayClient::new(channels[i % channels.len()].clone());
            i += 1;
            let known = match all_parties(&gateway).await {
                Ok(parties) => parties,
                Err(e) => {
                    last = e.to_string();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let mut missing = party_ids
                .iter()
                .filter(|id| !known.iter().any(|p| p.party_id == **id));
            let Some(id) = missing.next() else {
                return Ok(());
            };
            let req = authority::enrol(&self.admin, id, &unheld_identity())?;
            if let Err(e) = gateway.enroll(req).await {
                last = e.to_string();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        bail!("enrolling {party_ids:?}: {last}")
    }
}

/// Every enrolled party.
async fn all_parties(
    gateway: &PartyGatewayClient<ClientChannel>,
) -> anyhow::Result<Vec<pb::Party>> {
    mpc_client::paging::all(|page_size, page_token| {
        let mut gateway = gateway.clone();
        async move {
            let page = gateway
                .list_parties(pb::ListPartiesRequest {
                    page_size,
                    page_token,
                })
                .await?
                .into_inner();
            anyhow::Ok((page.parties, page.next_page_token))
        }
    })
    .await
}

/// A party identity as `mpc-party identity` prints it, whose secret keys are thrown away.
fn unheld_identity() -> String {
    let signing = SigningKey::generate(&mut rand_core::OsRng);
    let mut encryption = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut encryption);
    // Never all zeros (refused as no key).
    encryption[0] |= 1;
    format!(
        "{}{}",
        hex::encode(signing.verifying_key().to_bytes()),
        hex::encode(encryption)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unheld_identities_enrol_and_differ() -> anyhow::Result<()> {
        let admin = SigningKey::from_bytes(&[5; 32]);
        let (a, b) = (unheld_identity(), unheld_identity());
        assert_ne!(a, b);
        let req = authority::enrol(&admin, "party-1", &a)?;
        assert_eq!(req.party_id, "party-1");
        Ok(())
    }
}
