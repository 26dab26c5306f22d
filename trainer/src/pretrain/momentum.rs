//! The momentum (key) encoder: an exponential moving average of the query encoder and head,
//! `key = m * key + (1 - m) * query`, parameters and BatchNorm running statistics alike.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

struct Collect<B: Backend> {
    values: Vec<Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val().detach();
        let n = t.shape().num_elements();
        self.values.push(t.reshape([n]));
    }
}

struct Blend<B: Backend> {
    query: std::vec::IntoIter<Tensor<B, 1>>,
    momentum: f32,
}

impl<B: Backend> ModuleMapper<B> for Blend<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, key, mapper) = param.consume();
        let query = self
            .query
            .next()
            .expect("key and query encoders have the same parameters");
        let dims = key.dims();
        let blended = key
            .detach()
            .mul_scalar(self.momentum)
            .add(query.reshape(dims).mul_scalar(1.0 - self.momentum))
            .detach();
        Param::from_mapped_value(id, blended, mapper)
    }
}

/// `key <- momentum * key + (1 - momentum) * query`, value by value (both modules must have
/// the same structure: the key encoder is made by [`independent_copy`] of the query).
pub fn momentum_update<B: Backend, M: Module<B>>(key: M, query: &M, momentum: f32) -> M {
    let mut c = Collect { values: Vec::new() };
    query.visit(&mut c);
    key.map(&mut Blend {
        query: c.values.into_iter(),
        momentum,
    })
}

/// A copy of `module` that shares nothing with it, without gradients. A plain `clone()`
/// shares BatchNorm's running statistics (`RunningState` holds them behind an `Arc`), so
/// the key encoder's batches would move the query's statistics; `fresh` is a newly
/// initialised module of the same structure that receives the values.
///
/// The values go over by a momentum-0 update (`0 * fresh + 1 * module`, exact in floats):
/// `fresh.load_record(module.clone().into_record())` left the fresh weights in place here
/// (Burn 0.21, flex), so the key encoder started from other random weights than the query.
pub fn independent_copy<B: Backend, M: Module<B>>(module: &M, fresh: M) -> M {
    momentum_update(fresh, module, 0.0).no_grad()
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::nn::{Linear, LinearConfig};

    use super::*;

    type B = Flex;

    fn weights(l: &Linear<B>) -> Vec<f32> {
        l.weight.val().into_data().to_vec().unwrap()
    }

    #[test]
    fn momentum_zero_copies_and_one_keeps() {
        let dev = Default::default();
        let query: Linear<B> = LinearConfig::new(3, 2).init(&dev);
        let key: Linear<B> = LinearConfig::new(3, 2).init(&dev);
        assert_ne!(weights(&query), weights(&key));
        let kept = momentum_update(key.clone(), &query, 1.0);
        assert_eq!(weights(&kept), weights(&key));
        let copied = momentum_update(key.clone(), &query, 0.0);
        assert_eq!(weights(&copied), weights(&query));
        let half = momentum_update(key.clone(), &query, 0.5);
        for ((h, k), q) in weights(&half)
            .iter()
            .zip(weights(&key))
            .zip(weights(&query))
        {
            assert!((h - 0.5 * (k + q)).abs() < 1e-6);
        }
    }

    #[test]
    fn an_independent_copy_has_the_values_and_its_own_statistics() {
        let dev = Default::default();
        let arch = medseg_models::Architecture::tiny("unet", 1, 2).unwrap();
        let query = arch.init::<B>(&dev).unwrap();
        let copy = independent_copy(&query, arch.init::<B>(&dev).unwrap());
        let a = crate::train::module_paths::parameters(&query);
        let b = crate::train::module_paths::parameters(&copy);
        assert_eq!(a, b);
        // Moving the copy's statistics leaves the query's alone.
        let copy = momentum_update(copy, &arch.init::<B>(&dev).unwrap(), 0.0);
        assert_eq!(a, crate::train::module_paths::parameters(&query));
        assert_ne!(a, crate::train::module_paths::parameters(&copy));
    }
}
