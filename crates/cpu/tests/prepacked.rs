//! Pre-packed matmul operands: a weight supplied with `Runner::read_stamped` (or held as a
//! constant) is packed once and kept while its stamp stays the same; a new stamp repacks
//! it. Values against the kernel executor, on one and two threads, the weight on either side
//! of the product. The products keep at most 128 rows on the unpacked side, the most the
//! packed path takes.

use crate::common;
use common::*;
use kiln_cpu::RunOptions;
use kiln_ir::Data;
use kiln_kernel::BufferId;

/// `y[N, M] = x[N, K] w^T + bias` with the weight `[M, K]` as the right operand, or
/// `y[M, N] = w x^T + bias` with it on the left (`left`).
fn program(left: bool) -> String {
    let (m, n, a, b, ep) = if left {
        (
            "M",
            "N",
            "load b1[i0*K + i1]",
            "load b0[i1*K + i0]",
            "v1 = load b2[i0]\n v2 = add(v0, v1)\n store b3[i0*N + i1] = v2",
        )
    } else {
        (
            "N",
            "M",
            "load b0[i0*K + i1]",
            "load b1[i1*K + i0]",
            "v1 = load b2[i1]\n v2 = add(v0, v1)\n store b3[i0*M + i1] = v2",
        )
    };
    format!(
        "symbol N >= 1
         symbol K >= 1
         symbol M >= 1
         b0 = input \"x\" f32[N*K]
         b1 = state \"w\" f32[M*K]
         b2 = state \"bias\" f32[M]
         b3 = output \"y\" f32[N*M]
         k0 = matmul m {m} k K n {n} {{
           a {{
             v0 = {a}
             yield v0
           }}
           b {{
             v0 = {b}
             yield v0
           }}
           epilogue {{
             v0 = acc
             {ep}
           }}
         }}"
    )
}

#[test]
fn a_stamped_weight_is_kept_until_its_stamp_changes() {
    for left in [false, true] {
        let program = parse(&program(left));
        let compiled = kiln_cpu::compile(&kiln_kernel::verify(program.clone()).unwrap()).unwrap();
        for (n, k, m) in [(1, 1, 1), (5, 3, 17), (64, 128, 512), (100, 783, 96)] {
            let b = bindings(&[("N", n), ("K", k), ("M", m)]);
            let mut plan = compiled.bind(&b).unwrap();
            let mut bufs = inputs(&program, &b, n * 3 + k + m, Fill::default());
            for threads in [1, 2] {
                let options = RunOptions {
                    threads: Some(threads),
                };
                let mut stamp = 10 * threads as u64;
                for round in 0..3 {
                    // Round 1 changes the weight but keeps its stamp: the kept packing is
                    // used (the result is round 0's). Round 2 stamps the change.
                    if round == 1 {
                        let Data::F32(w) = &mut bufs[1] else {
                            panic!("w is f32")
                        };
                        w.iter_mut().for_each(|v| *v = -*v * 0.5 + 0.25);
                    } else if round == 2 {
                        stamp += 1;
                    }
                    let want_bufs = if round == 1 {
                        let mut old = bufs.clone();
                        let Data::F32(w) = &mut old[1] else {
                            panic!("w is f32")
                        };
                        w.iter_mut().for_each(|v| *v = (*v - 0.25) / -0.5);
                        old
                    } else {
                        bufs.clone()
                    };
                    let want = match run_exec(&program, &b, &want_bufs) {
                        Ok(out) => out[3].clone(),
                        Err(e) => panic!("{e}"),
                    };
                    let mut y = Data::F32(vec![f32::NAN; n as usize * m as usize]);
                    let mut run = compiled.runner(&mut plan).unwrap();
                    run.read(BufferId(0), &bufs[0]).unwrap();
                    run.read_stamped(BufferId(1), &bufs[1], stamp).unwrap();
                    run.read_stamped(BufferId(2), &bufs[2], stamp).unwrap();
                    run.write(BufferId(3), &mut y).unwrap();
                    run.run(&options).unwrap();
                    let what =
                        format!("left {left}, {n}x{k}x{m}, {threads} threads, round {round}");
                    assert_close(&y, &want, 1e-5, k as f64 * 16.0 * 6e-8, &what);
                }
            }
        }
    }
}

#[test]
fn a_stamped_weight_shared_by_a_batch_runs_its_epilogue_per_element() {
    let program = parse(
        "symbol B >= 1
         symbol N >= 1
         b0 = input \"x\" f32[B*N*40]
         b1 = state \"w\" f32[33*40]
         b2 = state \"bias\" f32[33]
         b3 = output \"y\" f32[B*N*33]
         k0 = matmul batch [B] m N k 40 n 33 {
           a {
             v0 = load b0[(i0*N + i1)*40 + i2]
             yield v0
           }
           b {
             v0 = load b1[i1 + i2*40]
             yield v0
           }
           epilogue {
             v0 = acc
             v1 = load b2[i2]
             v2 = add(v0, v1)
             v3 = tanh(v2)
             store b3[(i0*N + i1)*33 + i2] = v3
           }
         }",
    );
    let compiled = kiln_cpu::compile(&kiln_kernel::verify(program.clone()).unwrap()).unwrap();
    for (batch, n) in [(1, 1), (3, 7), (28, 64), (2, 300)] {
        let b = bindings(&[("B", batch), ("N", n)]);
        let bufs = inputs(&program, &b, batch + n, Fill::default());
        let want = run_exec(&program, &b, &bufs).unwrap_or_else(|e| panic!("{e}"));
        let mut plan = compiled.bind(&b).unwrap();
        for threads in [1, 2] {
            for _ in 0..2 {
                let mut y = Data::F32(vec![f32::NAN; (batch * n * 33) as usize]);
                let mut run = compiled.runner(&mut plan).unwrap();
                run.read(BufferId(0), &bufs[0]).unwrap();
                run.read_stamped(BufferId(1), &bufs[1], 7).unwrap();
                run.read_stamped(BufferId(2), &bufs[2], 7).unwrap();
                run.write(BufferId(3), &mut y).unwrap();
                run.run(&RunOptions {
                    threads: Some(threads),
                })
                .unwrap();
                let what = format!("{batch}x{n}, {threads} threads");
                assert_close(&y, &want[3], 1e-5, 40.0 * 16.0 * 6e-8, &what);
            }
        }
    }
}
