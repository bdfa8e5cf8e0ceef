//! The threshold protocols behind one small API: ECDSA (CGGMP21) and Schnorr (FROST). Built in a later issue.
