//! The UNet family: encoder-decoder networks with skip connections, one file per member,
//! each composing the shared [`crate::blocks`].

pub mod attention_unet;
pub mod cenet;
pub mod csnet;
pub mod dense_unet;
pub mod lightnet;
pub mod multires_unet;
pub mod onenet;
pub mod r2_attention_unet;
pub mod r2_unet;
pub mod resunet;
pub mod scse_unet;
pub mod simple;
pub mod ternaus;
pub mod u2net;
pub mod unet;
pub mod unet_3plus;
pub mod unet_plus_plus;
pub mod unet_plus_plus_big;
pub mod unext;
