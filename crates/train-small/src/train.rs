//! The small convnet as a [`Trainer`]: its plan (the images and settings it is made from) and
//! what it builds (the network and the image flows).

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_nn::VarMap;
use engine::Params;
use imagedata::rng::names;
use imagedata::{FlowOptions, ImageDataGenerator, SplitData};
use models::{Architecture, ModelSpec, SmallCnn, SmallCnnConfig};
use pipeline::{Layout, Pipeline, layout};
use stage::{Built, Plan, Result, StageError, StageOptions, StageReport, Trainer};

use crate::data::load_flow;

/// Batches the image flows prepare ahead of the training loop.
const PREFETCH: usize = 2;

/// The small convnet as a stage: trained on `<data.dir>/train`, freshly augmented every
/// epoch, validated on `<data.dir>/validation`.
#[derive(Debug, Default)]
pub struct SmallTrainer {
    splits: Option<(SplitData, SplitData)>,
}

impl Trainer for SmallTrainer {
    const STAGE: &'static str = layout::stage::TRAIN_SMALL;
    const KEY: &'static str = "small_cnn";

    fn dir(layout: &Layout) -> PathBuf {
        layout.small_cnn()
    }

    fn plan(&mut self, pipeline: &Pipeline, _options: &StageOptions) -> Result<Plan> {
        let (train, validation) = SplitData::scan_pair(&pipeline.data.dir)?;
        let class_mode = stage::class_mode(pipeline.data.class_mode, &train.classes)?;
        let s = &pipeline.small_cnn;
        let d = &pipeline.data;
        let [h, w] = d.target_size;
        let spec = ModelSpec::new(
            Architecture::SmallCnn,
            train.classes.clone(),
            (h as usize, w as usize),
            s.preprocessing,
            None,
            None,
        )?;
        // The folder paths are left out: the images are digested by content, so moving the
        // project does not make the model stale.
        let plan = Plan {
            spec,
            class_mode,
            interpolation: d.interpolation,
            schedule: s.schedule(),
            batch_size: s.batch_size,
            settings: serde_json::json!({
                "target_size": d.target_size,
                "interpolation": d.interpolation,
                "batch_size": s.batch_size,
                "preprocessing": s.preprocessing,
                "augment": s.augment,
            }),
            inputs: vec![
                ("train_data".into(), train.digest.clone()),
                ("validation_data".into(), validation.digest.clone()),
            ],
        };
        self.splits = Some((train, validation));
        Ok(plan)
    }

    fn build(
        &mut self,
        pipeline: &Pipeline,
        plan: &Plan,
        options: &StageOptions,
        reason: &str,
    ) -> Result<Built> {
        let (train, validation) = self.splits.take().ok_or_else(|| {
            StageError::Settings("the small convnet was built before planned".into())
        })?;
        let s = &pipeline.small_cnn;
        let device = &options.device;
        let seed = pipeline.data.seed;
        let target_size = pipeline.data.target_size;
        let generator = ImageDataGenerator::new(s.augment.clone(), s.preprocessing)
            .map_err(|e| StageError::Settings(format!("small_cnn.augment: {e}")))?;
        let flow_options = |shuffle| FlowOptions {
            batch_size: s.batch_size,
            shuffle,
            seed,
            prefetch: PREFETCH,
            device: device.clone(),
            ..FlowOptions::default()
        };
        let progress = options.progress();
        let train_source = load_flow(
            &train,
            target_size,
            plan.interpolation,
            generator,
            flow_options(true),
            progress,
        )?;
        let validation_source = load_flow(
            &validation,
            target_size,
            plan.interpolation,
            ImageDataGenerator::preprocessing_only(s.preprocessing),
            flow_options(false),
            progress,
        )?;
        let spec = &plan.spec;
        let [h, w] = target_size;
        options.note(&format!(
            "Training the small convnet ({reason}): {} training and {} validation images of \
             {h}x{w}, {} classes ({}), {}, on {}",
            train.len(),
            validation.len(),
            spec.classes.len(),
            spec.classes.join(", "),
            if spec.is_binary() {
                "one sigmoid unit"
            } else {
                "softmax"
            },
            stage::describe_device(device)
        ));
        let varmap = VarMap::new();
        let mut rng = imagedata::rng::stream(seed, names::SMALL_CNN_INIT);
        let model = SmallCnn::new(
            &varmap,
            SmallCnnConfig {
                input_size: (h as usize, w as usize),
                units: spec.units,
            },
            &mut rng,
            device,
        )?;
        Ok(Built {
            network: Box::new(model),
            params: Params::all_trainable(&varmap)?,
            train: Box::new(train_source),
            validation: Box::new(validation_source),
            details: BTreeMap::from([("target_size".to_string(), serde_json::json!(target_size))]),
        })
    }
}

/// Runs the `train-small` stage: unless `small_cnn/model.safetensors` is up to date with the
/// images and the settings (or `force` is set), trains the small convnet and writes the output
/// folder. The saved model holds the weights of the best epoch by `small_cnn.monitor`.
pub fn train_small(pipeline: &Pipeline, options: &StageOptions) -> Result<StageReport> {
    stage::run(&mut SmallTrainer::default(), pipeline, options)
}
