//! The UNet family: encoder-decoder networks with skip connections, one file per member,
//! each composing the shared [`crate::blocks`].

pub mod attention_unet;
pub mod onenet;
pub mod u2net;
pub mod unet;
pub mod unet_plus_plus;
