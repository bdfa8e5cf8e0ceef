//! The LayerZero V2 DVN relayer: listener, verifier, signer, submitter. Built in a later issue.
