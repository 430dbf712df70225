// kiln C++ wrapper: RAII ownership of a kiln_module and exceptions for status codes, over the
// C API of kiln.h. Header-only; link with -lkiln_capi.
#ifndef KILN_HPP
#define KILN_HPP

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "kiln.h"

namespace kiln {

// A failed call: the status code and kiln_last_error()'s message.
class Error : public std::runtime_error {
public:
    Error(int status, const std::string &message) : std::runtime_error(message), status_(status) {}
    int status() const noexcept { return status_; }

private:
    int status_;
};

inline void check(int status) {
    if (status != KILN_OK) throw Error(status, kiln_last_error());
}

// A loaded module. Movable, not copyable; freed when it goes out of scope.
class Module {
public:
    explicit Module(const std::string &path, const char *backend = "cpu") {
        kiln_module *m = nullptr;
        check(kiln_module_load(path.c_str(), backend, &m));
        m_.reset(m);
    }

    std::string backend() const { return kiln_module_backend(m_.get()); }
    size_t num_inputs() const { return kiln_module_num_inputs(m_.get()); }
    size_t num_outputs() const { return kiln_module_num_outputs(m_.get()); }

    kiln_spec input_spec(size_t i) const {
        kiln_spec s;
        check(kiln_module_input_spec(m_.get(), i, &s));
        return s;
    }

    kiln_spec output_spec(size_t i) const {
        kiln_spec s;
        check(kiln_module_output_spec(m_.get(), i, &s));
        return s;
    }

    // Runs on caller memory; outputs stay valid until the next run.
    void run(const std::vector<kiln_tensor> &inputs) {
        check(kiln_module_run(m_.get(), inputs.data(), inputs.size()));
    }

    // A view of output i of the last run.
    kiln_tensor output(size_t i) const {
        kiln_tensor t;
        check(kiln_module_output(m_.get(), i, &t));
        return t;
    }

    // Output i of the last run, copied.
    template <typename T>
    std::vector<T> output_copy(size_t i) const {
        std::vector<T> v(kiln_module_output_bytes(m_.get(), i) / sizeof(T));
        check(kiln_module_output_copy(m_.get(), i, v.data(), v.size() * sizeof(T)));
        return v;
    }

    kiln_module *get() const noexcept { return m_.get(); }

private:
    struct Free {
        void operator()(kiln_module *m) const noexcept { kiln_module_free(m); }
    };
    std::unique_ptr<kiln_module, Free> m_;
};

}  // namespace kiln

#endif  // KILN_HPP
