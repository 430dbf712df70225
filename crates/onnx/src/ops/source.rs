//! Ops that make values: Constant, ConstantOfShape, Shape and Size (as dims, symbolic where
//! the shape is), Range, EyeLike, OneHot, Trilu.

use super::{NodeCx, OpError, OpResult, bail, int_array};
use crate::limits::MAX_FOLDED_ELEMENTS;
use crate::tensor::{elem_type, to_typed_array};
use crate::value::Value;
use kiln_ir::{Array, DType, Data, Dim, Shape};

pub fn constant(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    cx.typed_outputs = true;
    if let Some(t) = cx.attr_t("value") {
        let (a, narrow) = to_typed_array(t).map_err(|e| OpError(e.to_string()))?;
        return Ok(vec![Value::array(a).with_narrow(narrow)]);
    }
    if cx.has_attr("value_float") {
        return Ok(vec![Value::array(Array::scalar(
            DType::F32,
            cx.attr_f("value_float", 0.0),
        ))]);
    }
    if let Some(v) = cx.attr_floats("value_floats") {
        let a = Array::new(&[v.len()], Data::F32(v)).map_err(|e| OpError(e.to_string()))?;
        return Ok(vec![Value::array(a)]);
    }
    if cx.has_attr("value_int") {
        return Ok(vec![Value::array(int_array(
            &[],
            vec![cx.attr_i("value_int", 0)],
        )?)]);
    }
    if let Some(v) = cx.attr_ints("value_ints") {
        return Ok(vec![Value::array(int_array(&[v.len()], v)?)]);
    }
    bail!("only value, value_float(s) and value_int(s) constants are supported")
}

fn check_count(dims: &[usize]) -> OpResult<()> {
    let n = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .unwrap_or(u64::MAX);
    if n > MAX_FOLDED_ELEMENTS {
        bail!(
            "the result would have {n} elements, more than the {MAX_FOLDED_ELEMENTS} the importer folds"
        );
    }
    Ok(())
}

pub fn constant_of_shape(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    cx.typed_outputs = true;
    let dims = cx.dims_input(0, "shape")?;
    let (fill, narrow) = match cx.attr_t("value") {
        Some(t) => to_typed_array(t).map_err(|e| OpError(e.to_string()))?,
        None => (Array::scalar(DType::F32, 0.0), None),
    };
    if fill.len() != 1 {
        bail!("value must hold one element");
    }
    let v = fill.to_f64_vec()[0];
    let shape = Shape::new(dims);
    if let Some(k) = shape.as_known() {
        check_count(&k)?;
        let values = vec![v; k.iter().product()];
        return Ok(vec![
            Value::array(Array::from_f64_cast(fill.dtype(), &k, &values)).with_narrow(narrow),
        ]);
    }
    Ok(vec![
        Value::tensor(cx.g.full(shape, v, fill.dtype())).with_narrow(narrow),
    ])
}

pub fn shape(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    cx.typed_outputs = true;
    let v = cx.input(0)?.clone();
    let d = v.shape.dims().to_vec();
    let r = d.len() as i64;
    let clamp = |x: i64| if x < 0 { x + r } else { x }.clamp(0, r) as usize;
    let start = clamp(cx.attr_i("start", 0));
    let end = clamp(cx.attr_i("end", r));
    Ok(vec![Value::dims(d[start..end.max(start)].to_vec(), false)])
}

pub fn size(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    cx.typed_outputs = true;
    let v = cx.input(0)?.clone();
    Ok(vec![Value::dims(vec![Dim::product(v.shape.dims())], true)])
}

pub fn range(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let dtype = cx.input(0)?.dtype;
    let scalar = |cx: &mut NodeCx<'_>, i: usize, what: &str| -> OpResult<f64> {
        match cx.input(i)?.as_array() {
            Some(a) if a.len() == 1 => Ok(a.to_f64_vec()[0]),
            _ => bail!("{what} (input {i}) must be known when importing, as one element"),
        }
    };
    let (start, limit, delta) = (
        scalar(cx, 0, "start")?,
        scalar(cx, 1, "limit")?,
        scalar(cx, 2, "delta")?,
    );
    if delta == 0.0 || !delta.is_finite() || !start.is_finite() || !limit.is_finite() {
        bail!("range({start}, {limit}, {delta}) is not finite");
    }
    let n = ((limit - start) / delta).ceil().max(0.0);
    if n > MAX_FOLDED_ELEMENTS as f64 {
        bail!("range has {n} elements, more than the {MAX_FOLDED_ELEMENTS} the importer folds");
    }
    let n = n as usize;
    let values: Vec<f64> = if dtype.is_float() {
        // ONNX computes start + i·delta in the output type.
        (0..n).map(|i| start + i as f64 * delta).collect()
    } else {
        let (s, d) = (start as i64, delta as i64);
        (0..n as i64).map(|i| (s + i * d) as f64).collect()
    };
    let a = if dtype == DType::F32 {
        let (s, d) = (start as f32, delta as f32);
        Array::new(&[n], Data::F32((0..n).map(|i| s + i as f32 * d).collect()))
            .map_err(|e| OpError(e.to_string()))?
    } else {
        Array::from_f64_cast(dtype, &[n], &values)
    };
    Ok(vec![Value::array(a)])
}

pub fn eye_like(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    let (dtype, narrow) = if cx.has_attr("dtype") {
        cx.typed_outputs = true;
        let e = elem_type(i32::try_from(cx.attr_i("dtype", 1)).unwrap_or(-1))
            .map_err(|e| OpError(e.to_string()))?;
        (e.dtype, e.narrow)
    } else {
        (x.dtype(), None)
    };
    let k = cx.attr_i("k", 0);
    let Some(s) = x.shape().as_known() else {
        bail!("EyeLike needs a known shape, got {}", x.shape());
    };
    if s.len() != 2 {
        bail!("EyeLike needs a rank-2 input, got {}", x.shape());
    }
    check_count(&s)?;
    let mut v = vec![0.0; s[0] * s[1]];
    for i in 0..s[0] as i64 {
        let j = i + k;
        if (0..s[1] as i64).contains(&j) {
            v[i as usize * s[1] + j as usize] = 1.0;
        }
    }
    Ok(vec![
        Value::array(Array::from_f64_cast(dtype, &s, &v)).with_narrow(narrow),
    ])
}

pub fn one_hot(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    // The output has the values' type; the indices may be of any numeric type.
    cx.typed_outputs = true;
    let narrow = cx.input(2)?.narrow;
    let idx = cx.tensor(0)?;
    let depth = match cx.input(1)?.as_array() {
        Some(a) if a.len() == 1 => a.to_f64_vec()[0],
        _ => bail!("depth (input 1) must be known when importing, as one element"),
    };
    if !(1.0..=MAX_FOLDED_ELEMENTS as f64).contains(&depth) {
        bail!("depth {depth} is out of range");
    }
    let depth = depth as u64;
    let values = cx.tensor(2)?;
    let r = idx.rank() as i64 + 1;
    let a = cx.attr_i("axis", -1);
    let a = if a < 0 { a + r } else { a };
    if !(0..r).contains(&a) {
        bail!(
            "axis {} is out of range for output rank {r}",
            cx.attr_i("axis", -1)
        );
    }
    let g = cx.g;
    let idx = idx.cast(DType::I64);
    let idx = idx.lt(0.0).where_(idx.add(depth as f64), &idx);
    let mut shape: Vec<Dim> = idx.shape().dims().to_vec();
    shape.insert(a as usize, Dim::known(depth));
    let classes = g.iota(DType::I64, Shape::new(shape.clone()), a as usize);
    let hit = classes.eq(idx.unsqueeze(a));
    let off = values.slice(0, 0, 1, 1).reshape(Shape::scalar());
    let on = values.slice(0, 1, 2, 1).reshape(Shape::scalar());
    Ok(vec![
        Value::tensor(hit.where_(&on, &off)).with_narrow(narrow),
    ])
}

pub fn trilu(cx: &mut NodeCx<'_>) -> OpResult<Vec<Value>> {
    let x = cx.tensor(0)?;
    let k = match cx.opt_input(1) {
        Some(v) => match v.as_ints() {
            Some(k) if k.len() == 1 => k[0],
            _ => bail!("k (input 1) must be known when importing, as one element"),
        },
        None => 0,
    };
    let upper = cx.attr_i("upper", 1) != 0;
    let r = x.rank();
    if r < 2 {
        bail!("Trilu needs rank >= 2, got {}", x.shape());
    }
    let g = cx.g;
    let rows = g.iota(DType::I64, x.shape(), r - 2);
    let cols = g.iota(DType::I64, x.shape(), r - 1);
    let diff = cols.sub(&rows);
    let keep = if upper {
        diff.ge(k as f64)
    } else {
        diff.le(k as f64)
    };
    Ok(vec![Value::tensor(keep.where_(&x, 0.0))])
}
