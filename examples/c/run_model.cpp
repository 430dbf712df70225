// The C example through the C++ wrapper (kiln.hpp): load, run, compare with the reference;
// a missing file surfaces as a kiln::Error exception.
//
//   c++ -std=c++17 -I crates/capi/include examples/c/run_model.cpp
//       -L target/release -lkiln_capi -Wl,-rpath,target/release -o run_model_cpp
//   ./run_model_cpp digits_mlp.kiln examples/c/expected_logits.txt
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <vector>

#include "kiln.hpp"

int main(int argc, char **argv) {
    if (argc != 3) {
        std::cerr << "usage: " << argv[0] << " MODULE.kiln EXPECTED.txt\n";
        return 2;
    }
    try {
        kiln::Module missing("/nonexistent/model.kiln");
    } catch (const kiln::Error &e) {
        std::cout << "caught kiln::Error (status " << e.status() << "): " << e.what() << "\n";
    }
    try {
        kiln::Module m(argv[1]);
        kiln_spec in = m.input_spec(0);
        size_t shape[2] = {3, static_cast<size_t>(in.dims[1])};
        std::vector<float> x(shape[0] * shape[1]);
        for (size_t i = 0; i < x.size(); i++) x[i] = static_cast<float>((7 * i) % 17) / 16.0f;
        m.run({kiln_tensor{in.name, KILN_F32, x.data(), shape, 2}});
        std::vector<float> y = m.output_copy<float>(0);
        kiln_tensor out = m.output(0);

        std::ifstream ref(argv[2]);
        size_t rows = 0, cols = 0;
        ref >> rows >> cols;
        if (rows != out.shape[0] || cols != out.shape[1] || y.size() != rows * cols) {
            std::cerr << "shape differs from the reference\n";
            return 1;
        }
        size_t bad = 0;
        for (float v : y) {
            double want = 0;
            ref >> want;
            if (std::fabs(v - want) > 1e-5 * std::fmax(1.0, std::fabs(want))) bad++;
        }
        std::cout << out.name << " [" << rows << ", " << cols << "] "
                  << (bad ? "DIFFERS from" : "matches") << " the reference\n";
        return bad ? 1 : 0;
    } catch (const kiln::Error &e) {
        std::cerr << "kiln error " << e.status() << ": " << e.what() << "\n";
        return 1;
    }
}
