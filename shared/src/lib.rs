//! The shared crate of the CIBA OpenID Provider: protocol validation, wire errors, the domain,
//! the ports (store, clock, randomness, signer, push) and their adapters. Every Lambda in
//! `functions/` is a thin handler over this crate.

pub mod authorization_details;
pub mod aws_error;
pub mod backchannel;
pub mod callback_policy;
pub mod client_auth;
pub mod client_ca;
pub mod config;
pub mod context;
pub mod decision;
pub mod display;
pub mod domain;
pub mod dpop;
pub mod envelope;
pub mod error;
pub mod evidence;
pub mod fapi;
pub mod http;
pub mod ident;
pub mod ijson;
pub mod jcs;
pub mod jose;
pub mod jwt;
pub mod key_ring;
pub mod kms;
pub mod mtls;
pub mod notify;
pub mod op_secret;
pub mod ports;
pub mod protocol;
pub mod push;
pub mod registration;
pub mod secret;
pub mod store;
pub mod tokens;
pub mod transaction;
