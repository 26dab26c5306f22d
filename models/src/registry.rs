//! The model zoo's one table. An architecture is one file (its modules, its [`ArchConfig`]
//! with the paper's defaults, its [`Network::run`]) plus one line in [`zoo!`] below; from the
//! table come [`ZooConfig`] and [`ZooNet`] (one variant per architecture). [`Architecture`]
//! (the description stored in checkpoints and model cards, set by `key=value` options) and
//! [`SegModel`] (the one module type the trainer and exporter handle) are a zoo member plus
//! the wrappers any member can have: today the spatial transformer ([`crate::stn`]).

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use serde_json::{Map, Value};

use crate::graph::Graph;
use crate::network::{ArchConfig, Network, SegOutput, export_graph, forward};
use crate::ops::Ops;
use crate::stn::{Stn, StnConfig};

#[derive(Debug, thiserror::Error)]
pub enum ArchitectureError {
    #[error("unknown architecture '{0}'; available: {available}", available = Architecture::names().join(", "))]
    Unknown(String),
    #[error("invalid {arch} setting: {reason}")]
    Invalid { arch: &'static str, reason: String },
    #[error(
        "{arch} has no option '{key}'; its options are: {keys}",
        keys = options.join(", ")
    )]
    UnknownOption {
        arch: &'static str,
        key: String,
        options: Vec<String>,
    },
}

/// One row of the table, for listings.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub name: &'static str,
    pub family: &'static str,
    pub paper: &'static str,
}

/// Names earlier versions wrote into checkpoints and model cards, and what they are now.
const RENAMED: [(&str, &str); 2] = [("attention_unet", "attunet"), ("unet_plus_plus", "unetpp")];

/// The current registry name for `name` (lower case, old names renamed).
fn current_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    RENAMED
        .iter()
        .find(|(old, _)| *old == lower)
        .map_or(lower, |(_, new)| new.to_string())
}

/// Members whose module layout changed, and when: checkpoints are positional (bincode), so
/// one written before such a change cannot be read by later versions. A loader names these
/// in its error.
pub const LAYOUT_CHANGES: &[(&str, &str)] = &[(
    "deeplab",
    "2026-12-05, when it gained the xception and mobilenetv2 backbones",
)];

/// Options every architecture has but that come from the data, not from the user.
const DATA_OPTIONS: [&str; 2] = ["in_channels", "num_classes"];

macro_rules! zoo {
    ($($variant:ident => [$($module:ident)::+] {$config:ident, $model:ident};)*) => {
        /// Which member of the zoo, with its options.
        #[derive(Debug, Clone, PartialEq)]
        pub enum ZooConfig {
            $($variant(crate::$($module)::+::$config),)*
        }

        /// Any member of the zoo, as one Burn module.
        #[derive(Module, Debug)]
        #[allow(clippy::large_enum_variant)]
        pub enum ZooNet<B: Backend> {
            $($variant(crate::$($module)::+::$model<B>),)*
        }

        impl ZooConfig {
            pub const TABLE: &'static [Entry] = &[$(Entry {
                name: <crate::$($module)::+::$config as ArchConfig>::NAME,
                family: <crate::$($module)::+::$config as ArchConfig>::FAMILY,
                paper: <crate::$($module)::+::$config as ArchConfig>::PAPER,
            },)*];

            fn from_json(name: &str, options: Value) -> Option<Result<Self, serde_json::Error>> {
                $(if name == <crate::$($module)::+::$config as ArchConfig>::NAME {
                    return Some(serde_json::from_value::<crate::$($module)::+::$config>(options).map(Self::$variant));
                })*
                None
            }

            fn default_of(name: &str) -> Option<Self> {
                $(if name == <crate::$($module)::+::$config as ArchConfig>::NAME {
                    return Some(Self::$variant(crate::$($module)::+::$config::default()));
                })*
                None
            }

            fn tiny_of(name: &str) -> Option<Self> {
                $(if name == <crate::$($module)::+::$config as ArchConfig>::NAME {
                    return Some(Self::$variant(
                        <crate::$($module)::+::$config as ArchConfig>::tiny(),
                    ));
                })*
                None
            }

            fn config(&self) -> &dyn DynConfig {
                match self {
                    $(Self::$variant(c) => c,)*
                }
            }

            fn config_mut(&mut self) -> &mut dyn DynConfig {
                match self {
                    $(Self::$variant(c) => c,)*
                }
            }

            fn init<B: Backend>(&self, device: &B::Device) -> ZooNet<B> {
                match self {
                    $(Self::$variant(c) => ZooNet::$variant(c.init(device)),)*
                }
            }
        }

        impl<B: Backend> Network<B> for ZooNet<B> {
            fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
                match self {
                    $(Self::$variant(m) => m.run(o, x),)*
                }
            }

            fn widen_input(self, channels: usize) -> Result<Self, String> {
                Ok(match self {
                    $(Self::$variant(m) => Self::$variant(m.widen_input(channels)?),)*
                })
            }
        }
    };
}

// The table: variant => [module path] {config, model}. Adding an architecture is its file, its `mod`
// line in lib.rs and one line here, AT THE END: a checkpoint stores its variant by position,
// so a line inserted above others makes their saved runs unreadable (the test
// `table_order_is_append_only` holds the order).
zoo! {
    Unet => [unet_family::unet] {UNetConfig, UNet};
    AttentionUnet => [unet_family::attention_unet] {AttentionUNetConfig, AttentionUNet};
    UnetPlusPlus => [unet_family::unet_plus_plus] {UNetPlusPlusConfig, UNetPlusPlus};
    SimpleUnet => [unet_family::simple] {SimpleUNetConfig, SimpleUNet};
    Unet3Plus => [unet_family::unet_3plus] {UNet3PlusConfig, UNet3Plus};
    UnetPlusPlusBig => [unet_family::unet_plus_plus_big] {UNetPlusPlusBigConfig, UNetPlusPlusBig};
    DenseUnet => [unet_family::dense_unet] {DenseUNetConfig, DenseUNet};
    R2Unet => [unet_family::r2_unet] {R2UNetConfig, R2UNet};
    R2AttUnet => [unet_family::r2_attention_unet] {R2AttUNetConfig, R2AttUNet};
    ScseUnet => [unet_family::scse_unet] {ScseUNetConfig, ScseUNet};
    MultiResUnet => [unet_family::multires_unet] {MultiResUNetConfig, MultiResUNet};
    Unext => [unet_family::unext] {UNextConfig, UNext};
    ResUnet => [unet_family::resunet] {ResUNetConfig, ResUNet};
    Ternaus => [unet_family::ternaus] {TernausNetConfig, TernausNet};
    CeNet => [unet_family::cenet] {CeNetConfig, CeNet};
    CsNet => [unet_family::csnet] {CsNetConfig, CsNet};
    U2net => [unet_family::u2net] {U2NetConfig, U2Net};
    U2netp => [unet_family::u2net] {U2NetPConfig, U2Net};
    Onenet => [unet_family::onenet] {OneNetConfig, OneNet};
    Lightnet => [unet_family::lightnet] {LightNetConfig, LightNet};
    VitSeg => [vit_seg] {VitSegConfig, VitSeg};
    SegNet => [natural::segnet] {SegNetConfig, SegNet};
    DLinkNet => [natural::dlink] {DLinkNetConfig, DLinkNet};
    PspNet => [natural::pspnet] {PspNetConfig, PspNet};
    DeepLab => [natural::deeplab] {DeepLabConfig, DeepLab};
    DaNet => [natural::danet] {DaNetConfig, DaNet};
    OcNet => [natural::ocnet] {OcNetConfig, OcNet};
    EaNet => [natural::eanet] {EaNetConfig, EaNet};
    OcrNet => [natural::ocrnet] {OcrNetConfig, OcrNet};
    Setr => [setr] {SetrConfig, Setr};
    TransUnet => [transunet] {TransUNetConfig, TransUNet};
    LrfEaNet => [natural::lrfea] {LrfEaNetConfig, LrfEaNet};
    HrNet => [natural::hrnet] {HrNetConfig, HrNet};
    HarDNet => [natural::hardnet] {HarDMsegConfig, HarDMseg};
    HarDNetAlt => [natural::hardnet] {HarDMsegAltConfig, HarDMseg};
}

/// The object-safe part of [`ArchConfig`], so [`Architecture`] needs no match per method.
trait DynConfig {
    fn name(&self) -> &'static str;
    fn in_channels(&self) -> usize;
    fn num_classes(&self) -> usize;
    fn set_io(&mut self, in_channels: usize, num_classes: usize);
    fn size_multiple(&self) -> usize;
    fn validate(&self) -> Result<(), String>;
    fn scale_widths(&mut self, scale: f64);
    fn to_json(&self) -> Map<String, Value>;
}

impl<C: ArchConfig> DynConfig for C {
    fn name(&self) -> &'static str {
        C::NAME
    }
    fn in_channels(&self) -> usize {
        ArchConfig::in_channels(self)
    }
    fn num_classes(&self) -> usize {
        ArchConfig::num_classes(self)
    }
    fn set_io(&mut self, in_channels: usize, num_classes: usize) {
        ArchConfig::set_io(self, in_channels, num_classes)
    }
    fn size_multiple(&self) -> usize {
        ArchConfig::size_multiple(self)
    }
    fn validate(&self) -> Result<(), String> {
        ArchConfig::validate(self)
    }
    fn scale_widths(&mut self, scale: f64) {
        ArchConfig::scale_widths(self, scale)
    }
    fn to_json(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            other => unreachable!("an architecture config serializes to an object, not {other:?}"),
        }
    }
}

/// A `key=value` option's value as JSON: a number, `true`/`false`, or else a string.
fn option_value(text: &str) -> Value {
    if text.contains(',') {
        // A list option (`dilations=1,2,4,8`): each item read as a value of its own.
        return Value::Array(text.split(',').map(|t| option_value(t.trim())).collect());
    }
    serde_json::from_str::<Value>(text)
        .ok()
        .filter(|v| !v.is_object() && !v.is_array() && !v.is_null())
        .unwrap_or_else(|| Value::String(text.to_string()))
}

/// A zoo member and its wrappers: what a checkpoint or model card stores, as
/// `{"name": NAME, ...options, "stn": {...}}` (`stn` only when the member is wrapped).
#[derive(Debug, Clone, PartialEq)]
pub struct Architecture {
    pub net: ZooConfig,
    /// The spatial transformer in front of the member (`--stn`).
    pub stn: Option<StnConfig>,
}

impl From<ZooConfig> for Architecture {
    fn from(net: ZooConfig) -> Self {
        Self { net, stn: None }
    }
}

/// The key under which a wrapped architecture stores its transformer.
const STN_KEY: &str = "stn";

impl Architecture {
    pub const TABLE: &'static [Entry] = ZooConfig::TABLE;

    pub fn names() -> Vec<&'static str> {
        Self::TABLE.iter().map(|e| e.name).collect()
    }

    fn of(
        name: &str,
        make: fn(&str) -> Option<ZooConfig>,
        io: (usize, usize),
    ) -> Result<Self, ArchitectureError> {
        let mut net = make(&current_name(name))
            .ok_or_else(|| ArchitectureError::Unknown(name.to_string()))?;
        net.config_mut().set_io(io.0, io.1);
        Ok(net.into())
    }

    /// The paper's default configuration of the named architecture.
    pub fn by_name(
        name: &str,
        in_channels: usize,
        num_classes: usize,
    ) -> Result<Self, ArchitectureError> {
        Self::of(name, ZooConfig::default_of, (in_channels, num_classes))
    }

    /// The architecture's small test configuration (see [`ArchConfig::tiny`]).
    pub fn tiny(
        name: &str,
        in_channels: usize,
        num_classes: usize,
    ) -> Result<Self, ArchitectureError> {
        Self::of(name, ZooConfig::tiny_of, (in_channels, num_classes))
    }

    /// The same architecture behind a spatial transformer.
    pub fn with_stn(self, stn: StnConfig) -> Self {
        Self {
            stn: Some(stn),
            ..self
        }
    }

    /// Refuses an input the network cannot take, before anything is built or trained.
    pub fn check_input_size(&self, height: usize, width: usize) -> Result<(), ArchitectureError> {
        let m = self.size_multiple();
        if height == 0 || width == 0 || !height.is_multiple_of(m) || !width.is_multiple_of(m) {
            return Err(self.invalid(format!(
                "input {height}x{width}: both sides must be positive multiples of {m}"
            )));
        }
        Ok(())
    }

    pub fn entry(&self) -> Entry {
        let name = self.name();
        *Self::TABLE
            .iter()
            .find(|e| e.name == name)
            .expect("every variant is in the table")
    }

    pub fn name(&self) -> &'static str {
        self.net.config().name()
    }

    pub fn in_channels(&self) -> usize {
        self.net.config().in_channels()
    }

    pub fn num_classes(&self) -> usize {
        self.net.config().num_classes()
    }

    /// Input sides must be multiples of this.
    pub fn size_multiple(&self) -> usize {
        self.net.config().size_multiple()
    }

    pub fn validate(&self) -> Result<(), ArchitectureError> {
        let c = self.net.config();
        if c.in_channels() == 0 || c.num_classes() < 2 {
            return Err(self.invalid("needs at least 1 input channel and 2 classes".into()));
        }
        c.validate().map_err(|reason| self.invalid(reason))?;
        if let Some(stn) = &self.stn {
            stn.validate().map_err(|reason| self.invalid(reason))?;
        }
        Ok(())
    }

    fn invalid(&self, reason: String) -> ArchitectureError {
        ArchitectureError::Invalid {
            arch: self.name(),
            reason,
        }
    }

    /// The same architecture reading `channels` input channels.
    pub fn with_in_channels(&self, channels: usize) -> Self {
        let mut a = self.clone();
        let classes = a.num_classes();
        a.net.config_mut().set_io(channels, classes);
        a
    }

    /// Every channel width scaled by `scale` (0.25: a quarter of the paper's), for benches
    /// that compare architectures at one reduced size; the result is validated.
    pub fn scale_widths(&mut self, scale: f64) -> Result<(), ArchitectureError> {
        if !(scale > 0.0 && scale.is_finite()) {
            return Err(self.invalid(format!("width scale {scale}: expected a positive number")));
        }
        let mut scaled = self.clone();
        scaled.net.config_mut().scale_widths(scale);
        scaled.validate()?;
        *self = scaled;
        Ok(())
    }

    /// The options a user may set, with their current values.
    pub fn options(&self) -> Vec<(String, Value)> {
        self.net
            .config()
            .to_json()
            .into_iter()
            .filter(|(k, _)| !DATA_OPTIONS.contains(&k.as_str()))
            .collect()
    }

    /// Sets option `key` from its text (`--model-opt key=value`); the result is validated.
    pub fn set_option(&mut self, key: &str, value: &str) -> Result<(), ArchitectureError> {
        let arch = self.name();
        let mut json = self.net.config().to_json();
        if DATA_OPTIONS.contains(&key) || !json.contains_key(key) {
            return Err(ArchitectureError::UnknownOption {
                arch,
                key: key.to_string(),
                options: self
                    .options()
                    .into_iter()
                    .map(|(k, v)| format!("{k} (now {v})"))
                    .collect(),
            });
        }
        let old = json.insert(key.to_string(), option_value(value));
        let net = ZooConfig::from_json(arch, Value::Object(json))
            .expect("the architecture's own name")
            .map_err(|e| {
                self.invalid(format!(
                    "{key}={value}: {e} (now {})",
                    old.unwrap_or(Value::Null)
                ))
            })?;
        let parsed = Self {
            net,
            stn: self.stn.clone(),
        };
        parsed.validate()?;
        *self = parsed;
        Ok(())
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<SegModel<B>, ArchitectureError> {
        self.validate()?;
        Ok(SegModel {
            net: self.net.init(device),
            stn: self
                .stn
                .as_ref()
                .map(|s| s.init(self.in_channels(), device)),
        })
    }
}

impl serde::Serialize for Architecture {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let mut m = Map::new();
        m.insert("name".into(), Value::String(self.name().into()));
        m.extend(self.net.config().to_json());
        if let Some(stn) = &self.stn {
            m.insert(
                STN_KEY.into(),
                serde_json::to_value(stn).map_err(S::Error::custom)?,
            );
        }
        Value::Object(m).serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Architecture {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let Value::Object(mut m) = Value::deserialize(d)? else {
            return Err(D::Error::custom("an architecture is a JSON object"));
        };
        let name = match m.remove("name") {
            Some(Value::String(n)) => n,
            _ => return Err(D::Error::custom("an architecture needs a \"name\"")),
        };
        let stn = m
            .remove(STN_KEY)
            .map(serde_json::from_value::<StnConfig>)
            .transpose()
            .map_err(|e| D::Error::custom(format!("architecture {name}, stn: {e}")))?;
        match ZooConfig::from_json(&current_name(&name), Value::Object(m)) {
            Some(r) => r
                .map(|net| Self { net, stn })
                .map_err(|e| D::Error::custom(format!("architecture {name}: {e}"))),
            None => Err(D::Error::custom(ArchitectureError::Unknown(name))),
        }
    }
}

/// A zoo member as one Burn module, behind its spatial transformer if it has one.
#[derive(Module, Debug)]
pub struct SegModel<B: Backend> {
    pub net: ZooNet<B>,
    pub stn: Option<Stn<B>>,
}

impl<B: Backend> Network<B> for SegModel<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        match &self.stn {
            Some(stn) => stn.wrap(o, x, |o, x| self.net.run(o, x)),
            None => self.net.run(o, x),
        }
    }

    fn widen_input(self, channels: usize) -> Result<Self, String> {
        let stn = match self.stn {
            Some(stn) => Some(stn.widen_input(channels)?),
            None => None,
        };
        Ok(Self {
            net: self.net.widen_input(channels)?,
            stn,
        })
    }
}

impl<B: Backend> SegModel<B> {
    /// Logits `[batch, classes, h, w]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        forward(self, x).logits
    }

    /// Logits and auxiliary outputs (deep supervision, transforms) for training objectives.
    pub fn forward_train(&self, x: Tensor<B, 4>) -> SegOutput<Tensor<B, 4>> {
        forward(self, x)
    }

    /// Logits, auxiliary outputs and the values the network offered through
    /// [`Ops::tap`] (name, tensor): every member offers its encoder output as
    /// [`crate::network::ENCODER_TAP`].
    pub fn forward_taps(
        &self,
        x: Tensor<B, 4>,
    ) -> (SegOutput<Tensor<B, 4>>, crate::network::Taps<B>) {
        crate::network::forward_with_taps(self, x)
    }

    /// The model widened to read `channels` stacked slices (see [`Network::widen_input`]).
    pub fn widen_input(self, channels: usize) -> Result<Self, ArchitectureError> {
        Network::widen_input(self, channels).map_err(|reason| ArchitectureError::Invalid {
            arch: "model",
            reason,
        })
    }

    /// The inference graph (BatchNorm folded) computing [`Self::forward`] in eval mode for an
    /// input of `input_shape`.
    pub fn export(&self, input_shape: [usize; 4]) -> Graph {
        export_graph(self, input_shape)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, Tolerance};

    use super::*;
    use crate::unet_family::unet::UNetConfig;

    /// Checkpoints record a member by its position in the table: the order of the members
    /// that saved runs may hold never changes; new ones go at the end (and here).
    #[test]
    fn table_order_is_append_only() {
        let order = [
            "unet",
            "attunet",
            "unetpp",
            "simple",
            "unet3p",
            "unetpp-big",
            "denseunet",
            "r2unet",
            "r2attunet",
            "scseunet",
            "multires",
            "unext",
            "resunet",
            "ternaus",
            "cenet",
            "csnet",
            "u2net",
            "u2netp",
            "onenet",
            "lightnet",
            "vit_seg",
            "segnet",
            "dlink",
            "pspnet",
            "deeplab",
            "danet",
            "ocnet",
            "eanet",
            "ocrnet",
            "setr",
            "transunet",
            "lrfea",
            "hrnet",
            "hardnet",
            "hardnet-alt",
        ];
        let names: Vec<&str> = ZooConfig::TABLE.iter().map(|e| e.name).collect();
        assert_eq!(names, order);
    }

    fn small_unet(in_channels: usize) -> Architecture {
        Architecture::from(ZooConfig::Unet(UNetConfig {
            in_channels,
            num_classes: 2,
            base_width: 4,
            depth: 2,
            ..UNetConfig::default()
        }))
    }

    #[test]
    fn descriptions_round_trip_in_the_stored_format() {
        let arch = small_unet(1);
        let json = serde_json::to_string(&arch).unwrap();
        assert!(json.contains("\"name\":\"unet\""), "{json}");
        let back: Architecture = serde_json::from_str(&json).unwrap();
        assert_eq!(back, arch);
        // The format written before the registry table (serde's tagged enum).
        let old = r#"{"name":"unet","in_channels":3,"num_classes":2,"base_width":16,"depth":4,"upsampling":"bilinear"}"#;
        let old: Architecture = serde_json::from_str(old).unwrap();
        assert_eq!(old.in_channels(), 3);
        let err = serde_json::from_str::<Architecture>(r#"{"name":"nonet"}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown architecture 'nonet'"),
            "{err}"
        );
    }

    #[test]
    fn renamed_members_load_under_their_old_names() {
        let old =
            r#"{"name":"attention_unet","in_channels":1,"num_classes":2,"base_width":8,"depth":3}"#;
        let arch: Architecture = serde_json::from_str(old).unwrap();
        assert_eq!(arch.name(), "attunet");
        assert_eq!(
            Architecture::by_name("unet_plus_plus", 1, 2)
                .unwrap()
                .name(),
            "unetpp"
        );
    }

    #[test]
    fn every_member_scales_its_widths_and_stays_valid() {
        let dev = Default::default();
        for name in Architecture::names() {
            let full = Architecture::by_name(name, 1, 2).unwrap();
            let mut quarter = full.clone();
            quarter.scale_widths(0.25).unwrap();
            let side = 4 * full.size_multiple().max(8);
            let count = |a: &Architecture| {
                a.init::<burn::backend::Flex>(&dev)
                    .unwrap()
                    .export([1, 1, side, side])
                    .parameter_count()
            };
            let (big, small) = (count(&full), count(&quarter));
            assert!(
                small * 4 < big,
                "{name}: {small} parameters at 1/4 width, {big} at full"
            );
        }
        let mut unet = small_unet(1);
        assert!(unet.scale_widths(0.0).is_err() && unet.scale_widths(f64::NAN).is_err());
    }

    #[test]
    fn options_are_set_by_key_and_bad_ones_are_refused_with_the_list() {
        let mut arch = Architecture::by_name("UNet", 1, 2).unwrap();
        arch.set_option("base_width", "8").unwrap();
        arch.set_option("upsampling", "bilinear").unwrap();
        let ZooConfig::Unet(c) = &arch.net else {
            panic!("a unet")
        };
        assert_eq!(
            (c.base_width, c.upsampling),
            (8, crate::Upsampling::Bilinear)
        );
        let err = arch.set_option("widht", "8").unwrap_err().to_string();
        assert!(
            err.contains("no option 'widht'") && err.contains("base_width (now 8)"),
            "{err}"
        );
        let err = arch.set_option("depth", "deep").unwrap_err().to_string();
        assert!(err.contains("depth=deep"), "{err}");
        let err = arch.set_option("depth", "9").unwrap_err().to_string();
        assert!(err.contains("depth"), "{err}");
        assert!(arch.set_option("num_classes", "3").is_err());
        let ZooConfig::Unet(c) = &arch.net else {
            panic!("a unet")
        };
        assert_eq!(c.depth, 4, "a refused option changes nothing");
    }

    #[test]
    fn list_options_are_comma_separated() {
        let mut arch = Architecture::by_name("dlink", 1, 2).unwrap();
        arch.set_option("dilations", "1,2,4,8").unwrap();
        let ZooConfig::DLinkNet(c) = &arch.net else {
            panic!("a dlink")
        };
        assert_eq!(c.dilations, [1, 2, 4, 8]);
        let err = arch.set_option("dilations", "1,0").unwrap_err().to_string();
        assert!(err.contains("dilations"), "{err}");
        let err = arch
            .set_option("dilations", "1,two")
            .unwrap_err()
            .to_string();
        assert!(err.contains("dilations=1,two"), "{err}");
    }

    /// On the training backend, as `train --init-from` uses it: the widened weight must be a
    /// trainable leaf, and the model must start out computing what the old one did.
    #[test]
    fn a_widened_model_computes_the_old_one_on_its_centre_channel() {
        type A = Autodiff<Flex>;
        let dev = Default::default();
        let old = small_unet(1).init::<A>(&dev).unwrap();
        let x = Tensor::<A, 4>::random([2, 1, 16, 16], Distribution::Default, &dev);
        let before = old.forward(x.clone());
        let wide = old.widen_input(3).unwrap();
        // Whatever the neighbours hold, only the centre channel counts at first.
        let prev = Tensor::<A, 4>::random([2, 1, 16, 16], Distribution::Default, &dev);
        let next = Tensor::<A, 4>::random([2, 1, 16, 16], Distribution::Default, &dev);
        let after = wide.forward(Tensor::cat(vec![prev, x, next], 1));
        after
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&before.into_data(), Tolerance::absolute(1e-6));
        // The neighbours' zero weights get gradients, so they can learn.
        let grads = after.sum().backward();
        let ZooNet::Unet(unet) = &wide.net else {
            panic!("a unet")
        };
        let grad = unet
            .stem
            .first
            .conv
            .weight
            .grad(&grads)
            .expect("a trainable weight");
        let [out_ch, in_ch, k, _] = grad.dims();
        assert_eq!(in_ch, 3);
        let previous = grad.slice([0..out_ch, 0..1, 0..k, 0..k]).abs().sum();
        assert!(previous.into_scalar() > 0.0);
    }

    /// Every member offers its encoder output as the "encoder" tap (a feature map smaller
    /// than the input), and taps leave the exported graph alone: no node carries a tap's name
    /// and the graph is the same with or without anything asking for taps.
    #[test]
    fn every_member_taps_its_encoder_and_exports_without_taps() {
        let dev = Default::default();
        for name in Architecture::names() {
            let arch = Architecture::tiny(name, 1, 2).unwrap();
            let side = 4 * arch.size_multiple().max(8);
            let model = arch.init::<Flex>(&dev).unwrap();
            let x = Tensor::<Flex, 4>::random([2, 1, side, side], Distribution::Default, &dev);
            let (out, taps) = model.forward_taps(x.clone());
            let encoder: Vec<_> = taps
                .iter()
                .filter(|(n, _)| n == crate::network::ENCODER_TAP)
                .collect();
            assert_eq!(
                encoder.len(),
                1,
                "{name}: {:?}",
                taps.iter().map(|t| &t.0).collect::<Vec<_>>()
            );
            let [n, c, h, w] = encoder[0].1.dims();
            assert!(
                n == 2 && c > 0 && h < side && w < side,
                "{name}: {:?}",
                encoder[0].1.dims()
            );
            assert_eq!(out.logits.dims(), model.forward(x).dims(), "{name}");
            let graph = model.export([1, 1, side, side]);
            let again = model.export([1, 1, side, side]);
            assert_eq!(graph.nodes.len(), again.nodes.len(), "{name}");
            for node in &graph.nodes {
                for (tap, _) in &taps {
                    assert!(
                        !node.name.split('/').any(|part| part == tap),
                        "{name}: node {} named after tap {tap}",
                        node.name
                    );
                }
            }
        }
    }

    #[test]
    fn only_a_single_channel_input_widens_to_an_odd_count() {
        let dev = Default::default();
        let err = small_unet(1)
            .init::<Flex>(&dev)
            .unwrap()
            .widen_input(2)
            .unwrap_err();
        assert!(err.to_string().contains("1 to 2"), "{err}");
        let three = small_unet(3).init::<Flex>(&dev).unwrap();
        assert!(three.widen_input(5).is_err());
    }
}
