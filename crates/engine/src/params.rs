//! A network's named parameters, each trainable or frozen.

use crate::error::{EngineError, Result};
use artifact::Metadata;
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use std::collections::BTreeMap;
use std::path::Path;

/// One named parameter.
#[derive(Debug, Clone)]
pub struct Param {
    /// The name in the network's [`VarMap`] (and in weights files).
    pub name: String,
    /// The variable itself (shares storage with the network's copy).
    pub var: Var,
    /// Whether the optimizer updates it. Frozen parameters get no optimizer state and their
    /// gradients, if any are computed, are ignored.
    pub trainable: bool,
}

/// A network's parameters in name order, each marked trainable or frozen.
///
/// The order is the sorted order of the names, so everything derived from it (optimizer
/// state, checkpoints) is the same from run to run.
///
/// Freezing here means the optimizer never touches a parameter. Candle's backward pass still
/// computes gradients for every variable the loss depends on, so a large frozen part (VGG16
/// blocks 1-4) is cheapest when the network holds it as plain tensors rather than variables.
#[derive(Debug, Clone, Default)]
pub struct Params {
    params: Vec<Param>,
}

impl Params {
    /// Every variable of `varmap`; those whose name satisfies `trainable` are trained, the others
    /// frozen.
    pub fn from_varmap(varmap: &VarMap, trainable: impl Fn(&str) -> bool) -> Result<Self> {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("the variable map's lock is poisoned".into()))?;
        let vars = data.iter().map(|(n, v)| (n.clone(), v.clone()));
        Self::new(vars, trainable)
    }

    /// Every variable of `varmap`, all trainable.
    pub fn all_trainable(varmap: &VarMap) -> Result<Self> {
        Self::from_varmap(varmap, |_| true)
    }

    /// Named variables; those whose name satisfies `trainable` are trained. Names must be unique.
    pub fn new(
        vars: impl IntoIterator<Item = (String, Var)>,
        trainable: impl Fn(&str) -> bool,
    ) -> Result<Self> {
        let mut params: Vec<Param> = vars
            .into_iter()
            .map(|(name, var)| Param {
                trainable: trainable(&name),
                name,
                var,
            })
            .collect();
        params.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = params.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(EngineError::config(
                "parameters",
                format!("the name `{}` is used twice", w[0].name),
            ));
        }
        Ok(Self { params })
    }

    /// All parameters, in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Param> {
        self.params.iter()
    }

    /// The trainable parameters, in name order.
    pub fn trainable(&self) -> impl Iterator<Item = &Param> {
        self.params.iter().filter(|p| p.trainable)
    }

    /// The parameter `name`.
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.params
            .binary_search_by(|p| p.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.params[i])
    }

    /// The number of parameters (tensors).
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// The number of scalar values in trainable and in frozen parameters.
    pub fn counts(&self) -> (usize, usize) {
        self.params.iter().fold((0, 0), |(t, f), p| {
            let n = p.var.elem_count();
            if p.trainable { (t + n, f) } else { (t, f + n) }
        })
    }

    /// The device of the parameters (the CPU when there are none).
    pub fn device(&self) -> Device {
        self.params
            .first()
            .map(|p| p.var.device().clone())
            .unwrap_or(Device::Cpu)
    }

    /// The current values, as tensors sharing the variables' storage (cheap; the values change
    /// when the variables are updated). Use [`Params::snapshot`] for a copy.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .map(|p| (p.name.clone(), p.var.as_detached_tensor()))
            .collect()
    }

    /// A copy of the current values, unaffected by later updates.
    pub fn snapshot(&self) -> Result<BTreeMap<String, Tensor>> {
        self.params
            .iter()
            .map(|p| Ok((p.name.clone(), p.var.as_detached_tensor().copy()?)))
            .collect()
    }

    /// Saves every parameter under its own name as a safetensors artifact (atomic write).
    pub fn save(&self, path: &Path, metadata: &Metadata) -> Result<()> {
        let tensors = self.tensors();
        artifact::save(path, tensors.iter().map(|(n, t)| (n.as_str(), t)), metadata)?;
        Ok(())
    }

    /// Loads every parameter from a weights file written by [`Params::save`] (or any file
    /// holding a tensor of the right shape under each parameter's name; other tensors are
    /// ignored) and returns the file's metadata.
    pub fn load(&self, path: &Path) -> Result<Metadata> {
        let (tensors, meta) = artifact::load(path, &self.device())?;
        self.assign(&tensors, path, "")?;
        Ok(meta)
    }

    /// Sets every parameter from `tensors[prefix + name]`, checking shapes first so that
    /// nothing is changed when anything is missing or mismatched; `path` names the file in
    /// errors.
    pub(crate) fn assign(
        &self,
        tensors: &BTreeMap<String, Tensor>,
        path: &Path,
        prefix: &str,
    ) -> Result<()> {
        let mut values = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let key = format!("{prefix}{}", p.name);
            let t = tensors.get(&key).ok_or_else(|| EngineError::Weights {
                path: path.to_path_buf(),
                reason: format!("missing tensor `{key}`"),
            })?;
            if t.dims() != p.var.dims() {
                return Err(EngineError::Weights {
                    path: path.to_path_buf(),
                    reason: format!(
                        "tensor `{key}` has shape {:?}, the parameter has {:?}",
                        t.dims(),
                        p.var.dims()
                    ),
                });
            }
            let t = t
                .to_device(p.var.device())?
                .to_dtype(p.var.dtype())?
                .contiguous()?;
            values.push(t);
        }
        for (p, t) in self.params.iter().zip(values) {
            p.var.set(&t)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    fn varmap() -> VarMap {
        let vm = VarMap::new();
        {
            let mut d = vm.data().lock().unwrap();
            let dev = Device::Cpu;
            d.insert(
                "b.weight".into(),
                Var::ones((2, 3), DType::F32, &dev).unwrap(),
            );
            d.insert("a.bias".into(), Var::zeros(3, DType::F32, &dev).unwrap());
        }
        vm
    }

    #[test]
    fn sorted_and_marked() {
        let p = Params::from_varmap(&varmap(), |n| n.starts_with('b')).unwrap();
        let names: Vec<_> = p.iter().map(|p| (p.name.as_str(), p.trainable)).collect();
        assert_eq!(names, [("a.bias", false), ("b.weight", true)]);
        assert_eq!(p.counts(), (6, 3));
        assert!(p.get("a.bias").is_some() && p.get("c").is_none());
    }

    #[test]
    fn save_load_roundtrip_and_shape_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let p = Params::all_trainable(&varmap()).unwrap();
        let mut meta = Metadata::new();
        meta.insert("k".into(), "v".into());
        p.save(&path, &meta).unwrap();
        let before = p.snapshot().unwrap();
        for q in p.iter() {
            q.var.set(&q.var.affine(2.0, 1.0).unwrap()).unwrap();
        }
        assert_eq!(
            p.load(&path).unwrap().get("k").map(String::as_str),
            Some("v")
        );
        for (n, t) in p.tensors() {
            assert_eq!(
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                before[&n].flatten_all().unwrap().to_vec1::<f32>().unwrap()
            );
        }
        // A parameter of another shape is refused, and nothing is changed.
        let other = VarMap::new();
        other.data().lock().unwrap().insert(
            "b.weight".into(),
            Var::zeros((3, 3), DType::F32, &Device::Cpu).unwrap(),
        );
        let q = Params::all_trainable(&other).unwrap();
        let e = q.load(&path).unwrap_err().to_string();
        assert!(e.contains("w.safetensors") && e.contains("[2, 3]"), "{e}");
    }
}
