//! Parameters by module path: initialising a sub-module from another checkpoint (of any
//! architecture whose sub-module has the same shape) and freezing parameter groups.
//!
//! A path is the field names from the architecture down, dot-separated, without the zoo's
//! `net.VARIANT` prefix: `stem.first.conv.weight`, `down.0.second.norm.gamma`; a spatial
//! transformer's parameters are under `stn.` (`stn.blocks.0.conv.weight`). A prefix `stem`
//! selects every parameter under it (whole components only: `down.1` is not `down.10`).

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// True when `path` lies under `prefix` (component-wise); an empty prefix selects everything.
pub fn under(path: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'.'))
}

/// Tracks the path while Burn walks a module; the zoo member's `net.VARIANT` levels are
/// dropped so paths are the same whichever architecture holds the sub-module.
#[derive(Default)]
struct PathStack {
    parts: Vec<String>,
}

impl PathStack {
    fn enter(&mut self, name: &str) {
        self.parts.push(name.to_string());
    }
    fn exit(&mut self) {
        self.parts.pop();
    }
    fn current(&self) -> String {
        let skip = if self.parts.first().is_some_and(|p| p == "net") {
            2
        } else {
            0
        };
        self.parts
            .iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join(".")
    }
}

struct Collect {
    stack: PathStack,
    found: BTreeMap<String, TensorData>,
}

impl<B: Backend> ModuleVisitor<B> for Collect {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.stack.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.stack.exit();
    }
    // Burn enters a module for every field, parameters included, so the stack ends with the
    // parameter's own name.
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.found
            .insert(self.stack.current(), param.val().to_data());
    }
}

/// Every float parameter of `module` by path.
pub fn parameters<B: Backend, M: Module<B>>(module: &M) -> BTreeMap<String, TensorData> {
    let mut c = Collect {
        stack: PathStack::default(),
        found: BTreeMap::new(),
    };
    module.visit(&mut c);
    c.found
}

/// What a path-wise copy or freeze did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Touched {
    pub parameters: usize,
    pub values: usize,
}

struct Replace<'a, B: Backend> {
    stack: PathStack,
    source: &'a BTreeMap<String, TensorData>,
    prefix: &'a str,
    device: B::Device,
    touched: Touched,
    mismatches: Vec<String>,
}

impl<B: Backend> ModuleMapper<B> for Replace<'_, B> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.stack.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.stack.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let path = self.stack.current();
        if !under(&path, self.prefix) {
            return param;
        }
        let Some(data) = self.source.get(&path) else {
            self.mismatches.push(format!("{path}: not in the source"));
            return param;
        };
        let (id, tensor, mapper) = param.consume();
        if data.shape.as_slice() != tensor.dims().as_slice() {
            self.mismatches.push(format!(
                "{path}: source {:?}, here {:?}",
                data.shape.as_slice(),
                tensor.dims()
            ));
            return Param::from_mapped_value(id, tensor, mapper);
        }
        self.touched.parameters += 1;
        self.touched.values += data.num_elements();
        let fresh = Tensor::<B, D>::from_data(data.clone(), &self.device);
        let fresh = if tensor.is_require_grad() {
            fresh.require_grad()
        } else {
            fresh
        };
        Param::from_mapped_value(id, fresh, mapper)
    }
}

/// Copies every parameter under `prefix` from `source` (see [`parameters`]) into `module`.
/// Refused, naming the paths, when a parameter is missing from the source or has another
/// shape, or when the prefix selects nothing.
pub fn load_under<B: Backend, M: Module<B>>(
    module: M,
    source: &BTreeMap<String, TensorData>,
    prefix: &str,
    device: &B::Device,
) -> Result<(M, Touched), String> {
    let mut r = Replace::<B> {
        stack: PathStack::default(),
        source,
        prefix,
        device: device.clone(),
        touched: Touched::default(),
        mismatches: Vec::new(),
    };
    let module = module.map(&mut r);
    if !r.mismatches.is_empty() {
        return Err(format!(
            "the parameters under '{prefix}' do not match the source: {}",
            r.mismatches.join("; ")
        ));
    }
    if r.touched.parameters == 0 {
        return Err(format!("no parameter lies under '{prefix}'"));
    }
    Ok((module, r.touched))
}

struct Freeze<'a> {
    stack: PathStack,
    prefixes: &'a [String],
    touched: Touched,
}

impl<B: Backend> ModuleMapper<B> for Freeze<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.stack.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.stack.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let path = self.stack.current();
        if !self.prefixes.iter().any(|p| under(&path, p)) {
            return param;
        }
        self.touched.parameters += 1;
        self.touched.values += param.shape().num_elements();
        param.set_require_grad(false)
    }
}

/// Stops training every parameter under any of `prefixes` (the optimizer never sees their
/// gradients). Refused when a prefix selects nothing.
pub fn freeze<B: Backend, M: Module<B>>(
    module: M,
    prefixes: &[String],
) -> Result<(M, Touched), String> {
    for p in prefixes {
        let mut probe = Freeze {
            stack: PathStack::default(),
            prefixes: std::slice::from_ref(p),
            touched: Touched::default(),
        };
        let _ = module.clone().map(&mut probe);
        if probe.touched.parameters == 0 {
            return Err(format!("--freeze {p}: no parameter lies under it"));
        }
    }
    let mut f = Freeze {
        stack: PathStack::default(),
        prefixes,
        touched: Touched::default(),
    };
    let module = module.map(&mut f);
    Ok((module, f.touched))
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};

    use medseg_models::Architecture;

    use super::*;

    type A = Autodiff<Flex>;

    fn unet(width: &str) -> medseg_models::SegModel<A> {
        let mut arch = Architecture::by_name("unet", 1, 2).unwrap();
        arch.set_option("base_width", width).unwrap();
        arch.set_option("depth", "2").unwrap();
        arch.init(&Default::default()).unwrap()
    }

    #[test]
    fn paths_drop_the_variant_and_prefixes_match_whole_components() {
        let p = parameters(&unet("4"));
        assert!(p.contains_key("stem.first.conv.weight"), "{:?}", p.keys());
        assert!(p.contains_key("down.1.second.norm.gamma"), "{:?}", p.keys());
        assert!(under("down.1.first", "down.1") && !under("down.10.first", "down.1"));
    }

    #[test]
    fn a_submodule_is_copied_and_the_rest_left_alone() {
        let source = unet("4");
        let target = unet("4");
        let src = parameters(&source);
        let before = parameters(&target);
        let (target, touched) = load_under(target, &src, "stem", &Default::default()).unwrap();
        let after = parameters(&target);
        // 2 conv weights (no bias) + 2 BatchNorms: gamma, beta and both running statistics.
        assert_eq!(touched.parameters, 10);
        assert_eq!(
            after["stem.first.conv.weight"],
            src["stem.first.conv.weight"]
        );
        assert_eq!(after["head.conv.weight"], before["head.conv.weight"]);
        // Another width: shapes differ, and the paths are named.
        let wide = parameters(&unet("8"));
        let err = load_under(unet("4"), &wide, "stem", &Default::default()).unwrap_err();
        assert!(
            err.contains("stem.first.conv.weight: source [8, 1, 3, 3]"),
            "{err}"
        );
        let err = load_under(unet("4"), &src, "encoder", &Default::default()).unwrap_err();
        assert!(err.contains("no parameter"), "{err}");
    }

    #[test]
    fn frozen_parameters_get_no_gradient() {
        let (model, touched) = freeze(unet("4"), &["stem".to_string()]).unwrap();
        assert!(touched.parameters > 0);
        let x = Tensor::<A, 4>::ones([1, 1, 8, 8], &Default::default());
        let grads = model.forward(x).sum().backward();
        let medseg_models::ZooNet::Unet(u) = &model.net else {
            panic!("a unet")
        };
        assert!(u.stem.first.conv.weight.grad(&grads).is_none());
        assert!(u.head.conv.weight.grad(&grads).is_some());
        assert!(freeze(unet("4"), &["nothing".to_string()]).is_err());
    }
}
