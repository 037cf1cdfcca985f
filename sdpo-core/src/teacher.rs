//! Teacher update rules over Burn modules.
//!
//! - [`ema_update`]: `teacher ← (1 − rate)·teacher + rate·student` for every
//!   float parameter, matching parameters by [`ParamId`] (identity), not by
//!   position. A teacher made by cloning the student shares its ids.
//! - [`trust_region_logits`]: teacher logits as `lerp(reference, student, rate)`.
//!
//! Both run without gradients: pass inner-backend (`valid()`) modules.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{backend::Backend, Tensor, TensorData};

/// A teacher parameter without a matching student parameter.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TeacherUpdateError {
    /// The student has no parameter with this id.
    #[error("teacher parameter {id} has no student parameter with the same id (was the teacher cloned from the student?)")]
    MissingStudentParam {
        /// The parameter id.
        id: String,
    },
    /// Same id, different shapes.
    #[error("parameter {id}: teacher shape {teacher:?} differs from student shape {student:?}")]
    ShapeMismatch {
        /// The parameter id.
        id: String,
        /// Teacher shape.
        teacher: Vec<usize>,
        /// Student shape.
        student: Vec<usize>,
    },
}

/// Collects every float parameter of a module by id, flattened to 1-D.
struct Collect<B: Backend> {
    params: HashMap<ParamId, Tensor<B, 1>>,
    shapes: HashMap<ParamId, Vec<usize>>,
    filter: Option<fn(&[String]) -> bool>,
    path: Vec<String>,
}

impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.filter.is_some_and(|f| !f(&self.path)) {
            return;
        }
        let t = param.val();
        self.shapes.insert(param.id, t.dims().to_vec());
        let n = t.shape().num_elements();
        self.params.insert(param.id, t.reshape([n]));
    }
}

/// Moves each teacher parameter toward the student's parameter of the same id.
struct Ema<B: Backend> {
    student: Collect<B>,
    rate: f64,
    error: Option<TeacherUpdateError>,
    path: Vec<String>,
}

impl<B: Backend> ModuleMapper<B> for Ema<B> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if self.error.is_some() || self.student.filter.is_some_and(|f| !f(&self.path)) {
            return param;
        }
        let (id, teacher, mapper) = param.consume();
        let updated = match self.student.params.get(&id) {
            None => {
                self.error = Some(TeacherUpdateError::MissingStudentParam { id: id.to_string() });
                teacher
            }
            Some(student) => {
                let dims = teacher.dims();
                let student_dims = &self.student.shapes[&id];
                if student_dims.as_slice() != dims.as_slice() {
                    self.error = Some(TeacherUpdateError::ShapeMismatch {
                        id: id.to_string(),
                        teacher: dims.to_vec(),
                        student: student_dims.clone(),
                    });
                    teacher
                } else {
                    let student = student.clone().reshape(dims);
                    (teacher * (1.0 - self.rate) + student * self.rate).detach()
                }
            }
        };
        Param::from_mapped_value(id, updated, mapper)
    }
}

/// EMA update of every float parameter: `teacher ← (1 − rate)·teacher +
/// rate·student`, parameters matched by id.
///
/// # Errors
/// [`TeacherUpdateError`] if a teacher parameter has no student counterpart or
/// a different shape; the teacher is then returned unchanged inside the error
/// path (use the `Result` to decide).
pub fn ema_update<B: Backend, M: Module<B>>(
    teacher: M,
    student: &M,
    rate: f64,
) -> Result<M, TeacherUpdateError> {
    ema_update_filtered(teacher, student, rate, None)
}

/// [`ema_update`] restricted to the parameters whose module path passes
/// `filter` (e.g. only LoRA adapter weights for the `lora-ema` teacher). The
/// path holds the field names from the root, e.g. `["layers", "0", "q_proj",
/// "lora_a"]`.
///
/// # Errors
/// As [`ema_update`].
pub fn ema_update_filtered<B: Backend, M: Module<B>>(
    teacher: M,
    student: &M,
    rate: f64,
    filter: Option<fn(&[String]) -> bool>,
) -> Result<M, TeacherUpdateError> {
    let mut collect = Collect {
        params: HashMap::new(),
        shapes: HashMap::new(),
        filter,
        path: Vec::new(),
    };
    student.visit(&mut collect);
    let mut ema = Ema {
        student: collect,
        rate,
        error: None,
        path: Vec::new(),
    };
    let updated = teacher.map(&mut ema);
    match ema.error {
        Some(e) => Err(e),
        None => Ok(updated),
    }
}

/// Trust-region teacher logits: `lerp(reference, student, rate) = reference +
/// rate·(student − reference)`, detached.
///
/// # Shapes
/// `reference, student: [batch, len, V]` (or any matching shape).
pub fn trust_region_logits<B: Backend, const D: usize>(
    reference: Tensor<B, D>,
    student: Tensor<B, D>,
    rate: f64,
) -> Tensor<B, D> {
    let reference = reference.detach();
    (reference.clone() + (student.detach() - reference) * rate).detach()
}

/// Every float parameter of a module as host data, keyed by id (for tests and
/// checkpoint comparisons).
pub fn parameter_data<B: Backend, M: Module<B>>(module: &M) -> HashMap<ParamId, TensorData> {
    let mut collect = Collect::<B> {
        params: HashMap::new(),
        shapes: HashMap::new(),
        filter: None,
        path: Vec::new(),
    };
    module.visit(&mut collect);
    collect
        .params
        .into_iter()
        .map(|(id, t)| (id, t.into_data()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::nn::{Linear, LinearConfig};

    type B = NdArray<f64>;

    #[derive(Module, Debug)]
    struct Net<B: Backend> {
        a: Linear<B>,
        b: Linear<B>,
    }

    fn net(dev: &burn::tensor::Device<B>) -> Net<B> {
        Net {
            a: LinearConfig::new(3, 4).init(dev),
            b: LinearConfig::new(4, 2).init(dev),
        }
    }

    #[test]
    fn ema_moves_every_parameter_by_exactly_the_rate() {
        let dev = Default::default();
        let student = net(&dev);
        let teacher_init = student.clone().map(&mut Shift(1.5));
        let before = parameter_data::<B, _>(&teacher_init);
        let stud = parameter_data::<B, _>(&student);
        let rate = 0.05;
        let teacher = ema_update(teacher_init, &student, rate).unwrap();
        let after = parameter_data::<B, _>(&teacher);
        assert_eq!(after.len(), 4);
        for (id, a) in after {
            let (a, t0, s) = (
                a.to_vec::<f64>().unwrap(),
                before[&id].to_vec::<f64>().unwrap(),
                stud[&id].to_vec::<f64>().unwrap(),
            );
            for ((a, t0), s) in a.iter().zip(&t0).zip(&s) {
                assert!((a - ((1.0 - rate) * t0 + rate * s)).abs() < 1e-14);
                // The teacher moved exactly `rate` of the way to the student.
                assert!(((t0 - a) - rate * (t0 - s)).abs() < 1e-14);
            }
        }
    }

    #[test]
    fn parameters_are_matched_by_id_not_position() {
        let dev = Default::default();
        // Burn initializes parameters lazily and a clone of an uninitialized
        // parameter draws its own values: materialize them before cloning.
        let l1: Linear<B> = LinearConfig::new(3, 3).init(&dev).map(&mut Shift(0.0));
        let l2: Linear<B> = LinearConfig::new(3, 3).init(&dev).map(&mut Shift(0.0));
        // The student holds the same parameters (same ids, moved values) in the
        // opposite order: pairing by position would mix l1 with l2.
        let teacher = vec![l1.clone(), l2.clone()];
        let student = vec![
            l2.clone().map(&mut Shift(10.0)),
            l1.clone().map(&mut Shift(-10.0)),
        ];
        let updated = ema_update(teacher, &student, 0.5).unwrap();
        let w = |l: &Linear<B>| l.weight.val().into_data().to_vec::<f64>().unwrap();
        for (got, (orig, shift)) in updated.iter().zip([(&l1, -10.0), (&l2, 10.0)]) {
            for (g, o) in w(got).iter().zip(w(orig)) {
                assert!((g - (o + 0.5 * shift)).abs() < 1e-12);
            }
        }
        // A foreign module (fresh ids) is rejected.
        let stranger = net(&dev);
        let err = ema_update(stranger, &net(&dev), 0.1).unwrap_err();
        assert!(matches!(
            err,
            TeacherUpdateError::MissingStudentParam { .. }
        ));
    }

    #[test]
    fn filtered_update_touches_only_selected_paths() {
        let dev = Default::default();
        let student = net(&dev);
        let teacher = student.clone().map(&mut Shift(2.0));
        let before = parameter_data::<B, _>(&teacher);
        fn only_b(path: &[String]) -> bool {
            path.first().is_some_and(|p| p == "b")
        }
        let updated = ema_update_filtered(teacher, &student, 0.5, Some(only_b)).unwrap();
        let after = parameter_data::<B, _>(&updated);
        let a_ids = [student.a.weight.id, student.a.bias.as_ref().unwrap().id];
        let b_ids = [student.b.weight.id, student.b.bias.as_ref().unwrap().id];
        for id in a_ids {
            assert_eq!(after[&id], before[&id]);
        }
        for id in b_ids {
            assert_ne!(after[&id], before[&id]);
        }
    }

    #[test]
    fn trust_region_mixes_logits() {
        let dev = Default::default();
        let r = Tensor::<B, 1>::from_data([0.0, 2.0], &dev);
        let s = Tensor::<B, 1>::from_data([1.0, 0.0], &dev);
        let got = trust_region_logits(r, s, 0.25)
            .into_data()
            .to_vec::<f64>()
            .unwrap();
        assert_eq!(got, vec![0.25, 1.5]);
    }

    /// Adds a constant to every float parameter, keeping ids.
    struct Shift(f64);
    impl ModuleMapper<B> for Shift {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, t, mapper) = param.consume();
            Param::from_mapped_value(id, t + self.0, mapper)
        }
    }
}
