//! The party daemon: encrypted share store, protocol execution, protected envelopes. Built in a later issue.
