/* Loads a .kiln module through kiln's C API, prints its signature, runs it on a
 * deterministic batch and checks the output against a stored reference.
 *
 *   cc -std=c11 -I crates/capi/include examples/c/run_model.c \
 *      -L target/release -lkiln_capi -Wl,-rpath,target/release -o run_model
 *   ./run_model digits_mlp.kiln examples/c/expected_logits.txt
 *
 * The module takes one f32 input of shape [N, F] (N symbolic); the program feeds
 * N = 3 rows with x[i] = ((7 * i) % 17) / 16. The reference file holds "ROWS COLS" and
 * then the expected values of the first output, one per line. Exit status 0 when every
 * value agrees within 1e-5 (relative), 1 otherwise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kiln.h"

static const char *dtype_name(uint32_t code) {
    static const char *names[] = {"f32", "f64", "i32", "i64", "u32", "bool"};
    return code <= KILN_BOOL ? names[code] : "?";
}

static int fail(const char *what, int status) {
    fprintf(stderr, "%s failed (status %d): %s\n", what, status, kiln_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODULE.kiln EXPECTED.txt\n", argv[0]);
        return 2;
    }
    kiln_module *m = NULL;
    int status = kiln_module_load(argv[1], "cpu", &m);
    if (status != KILN_OK) return fail("kiln_module_load", status);

    printf("backend %s\n", kiln_module_backend(m));
    for (size_t i = 0; i < kiln_module_num_inputs(m); i++) {
        kiln_spec s;
        kiln_module_input_spec(m, i, &s);
        printf("input  %s: %s%s\n", s.name, dtype_name(s.dtype), s.shape);
    }
    for (size_t i = 0; i < kiln_module_num_outputs(m); i++) {
        kiln_spec s;
        kiln_module_output_spec(m, i, &s);
        printf("output %s: %s%s\n", s.name, dtype_name(s.dtype), s.shape);
    }

    kiln_spec in;
    status = kiln_module_input_spec(m, 0, &in);
    if (status != KILN_OK) return fail("kiln_module_input_spec", status);
    if (in.rank != 2 || in.dtype != KILN_F32 || in.dims[1] < 1) {
        fprintf(stderr, "expected one f32 input of shape [N, F]\n");
        return 1;
    }
    size_t shape[2] = {3, (size_t)in.dims[1]};
    size_t count = shape[0] * shape[1];
    float *x = malloc(count * sizeof(float));
    if (!x) return 1;
    for (size_t i = 0; i < count; i++) x[i] = (float)((7 * i) % 17) / 16.0f;

    /* A wrong dtype is refused with an error code and a one-line message. */
    kiln_tensor wrong = {in.name, KILN_I32, x, shape, 2};
    status = kiln_module_run(m, &wrong, 1);
    printf("i32 input refused: status %d, \"%s\"\n", status, kiln_last_error());
    if (status != KILN_ERROR_INPUT) return 1;

    kiln_tensor input = {in.name, KILN_F32, x, shape, 2};
    status = kiln_module_run(m, &input, 1);
    if (status != KILN_OK) return fail("kiln_module_run", status);

    kiln_tensor out;
    status = kiln_module_output(m, 0, &out);
    if (status != KILN_OK) return fail("kiln_module_output", status);
    if (out.dtype != KILN_F32 || out.rank != 2) {
        fprintf(stderr, "expected an f32 output of rank 2\n");
        return 1;
    }
    const float *y = out.data;

    /* The same values, copied into a buffer of our own. */
    size_t bytes = kiln_module_output_bytes(m, 0);
    float *copy = malloc(bytes);
    if (!copy) return 1;
    status = kiln_module_output_copy(m, 0, copy, bytes);
    if (status != KILN_OK) return fail("kiln_module_output_copy", status);

    FILE *f = fopen(argv[2], "r");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    size_t rows = 0, cols = 0;
    if (fscanf(f, "%zu %zu", &rows, &cols) != 2 || rows != out.shape[0] || cols != out.shape[1]) {
        fprintf(stderr, "reference shape %zu x %zu, output %zu x %zu\n", rows, cols, out.shape[0],
                out.shape[1]);
        return 1;
    }
    size_t bad = 0;
    for (size_t i = 0; i < rows * cols; i++) {
        double want;
        if (fscanf(f, "%lf", &want) != 1) {
            fprintf(stderr, "reference has fewer than %zu values\n", rows * cols);
            return 1;
        }
        if (fabs(y[i] - want) > 1e-5 * fmax(1.0, fabs(want)) || copy[i] != y[i]) {
            if (bad++ < 5) fprintf(stderr, "%s[%zu] = %.9g, expected %.9g\n", out.name, i, y[i], want);
        }
    }
    fclose(f);
    printf("%s: %zu x %zu values, %s the reference\n", out.name, rows, cols,
           bad ? "DIFFER from" : "match");

    free(copy);
    free(x);
    kiln_module_free(m);
    return bad ? 1 : 0;
}
