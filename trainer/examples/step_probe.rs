//! Times training steps and inference of the default UNet on the chosen backend.
//! Usage: step_probe [size] [batch] [width] [steps]
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Distribution, Tensor};
use medseg_models::{Architecture, SegModel};
use medseg_trainer::backend::{self, Train};

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let (size, batch, width, steps) = (args[0], args[1], args[2], args[3]);
    let dev = backend::device();
    let mut arch = Architecture::by_name("unet", 1, 2).unwrap();
    let Architecture::Unet(u) = &mut arch;
    u.base_width = width;
    let mut model: SegModel<Train> = arch.init(&dev).unwrap();
    let mut optim = AdamConfig::new().init::<Train, SegModel<Train>>();
    for i in 0..steps {
        let t = Instant::now();
        let x = Tensor::<Train, 4>::random([batch, 1, size, size], Distribution::Default, &dev);
        let y = model.forward(x);
        let loss = y.powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model, grads);
        println!("step {i}: {:.3}s", t.elapsed().as_secs_f64());
    }
    let m = model.valid();
    for i in 0..3 {
        let t = Instant::now();
        let x = Tensor::<backend::Inner, 4>::random([1, 1, size, size], Distribution::Default, &dev);
        let _ = m.forward(x).into_data();
        println!("infer {i}: {:.3}s", t.elapsed().as_secs_f64());
    }
}
