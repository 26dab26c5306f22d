//! The UNet family: encoder-decoder networks with skip connections, one file per member,
//! each composing the shared [`crate::blocks`].

pub mod attention_unet;
pub mod cenet;
pub mod csnet;
pub mod resunet;
pub mod ternaus;
pub mod unet;
pub mod unet_plus_plus;
