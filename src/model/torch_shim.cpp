// TorchScript through libtorch, behind the C interface of torch_shim.h.
//
// Every entry point catches all exceptions: libtorch reports everything,
// from a missing file to a `raise` inside the model, by throwing, and an
// exception must never cross into C. Messages are cut to one line (the
// interpreter's traceback and c10's backtrace are dropped) so that they fit
// a log line and a dead-letter header.
//
// Input width: a TorchScript file does not declare its input shape. When
// the configuration gives none, the shim takes the second dimension of the
// first 2-D floating-point parameter (the first Linear layer's weight is
// [outputs, inputs]) as a candidate and keeps it only if forward() accepts
// a [2, w] batch of zeros and refuses a [2, w + 1] one. Otherwise the width
// stays unknown and any width is passed to the model, whose own error then
// dead-letters the message.
#include "model/torch_shim.h"

#include <ATen/Parallel.h>
#include <torch/script.h>
#include <torch/version.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

struct mls_torch {
        torch::jit::Module module;
        int threads = 0;
        bool has_output = false;
        std::string output;
        at::Tensor last; // keeps the latest result alive for the caller
};

namespace
{

// One line out of an exception message: the last line that names the
// error when the message is a TorchScript traceback, else the first line.
std::string brief(const char *what)
{
        std::string s(what ? what : "unknown error");
        std::vector<std::string> lines;
        size_t start = 0;

        while (start <= s.size()) {
                size_t end = s.find('\n', start);
                if (end == std::string::npos)
                        end = s.size();
                std::string line = s.substr(start, end - start);
                size_t a = line.find_first_not_of(" \t\r");
                if (a != std::string::npos)
                        lines.push_back(line.substr(a));
                start = end + 1;
        }
        if (lines.empty())
                return "unknown error";
        if (s.find("Traceback of TorchScript") != std::string::npos ||
            s.find("The following operation failed") != std::string::npos)
                return lines.back();
        return lines.front();
}

void set_err(char *errstr, size_t errstr_size, const std::string &msg)
{
        std::snprintf(errstr, errstr_size, "%s", msg.c_str());
}

// Selects the tensor to score with from what forward() returned.
at::Tensor pick(const mls_torch &t, const c10::IValue &v)
{
        if (v.isTensor()) {
                if (t.has_output)
                        throw std::runtime_error(
                                "output \"" + t.output +
                                "\" is configured, but the model returns "
                                "a single tensor");
                return v.toTensor();
        }
        if (v.isTuple() || v.isList()) {
                std::vector<c10::IValue> elems;
                if (v.isTuple())
                        for (const auto &e : v.toTupleRef().elements())
                                elems.push_back(e);
                else
                        for (const auto &e : v.toListRef())
                                elems.push_back(e);
                size_t i = 0;
                if (t.has_output) {
                        char *end = nullptr;
                        unsigned long n =
                                std::strtoul(t.output.c_str(), &end, 10);
                        if (t.output.empty() || *end)
                                throw std::runtime_error(
                                        "output \"" + t.output +
                                        "\" is not an index, and the model "
                                        "returns a tuple or list");
                        i = n;
                }
                if (i >= elems.size())
                        throw std::runtime_error("the model returns " +
                                                 std::to_string(elems.size()) +
                                                 " values; output " +
                                                 std::to_string(i) +
                                                 " does not exist");
                if (!elems[i].isTensor())
                        throw std::runtime_error(
                                "value " + std::to_string(i) +
                                " of the model's result is a " +
                                elems[i].tagKind() + ", not a tensor");
                return elems[i].toTensor();
        }
        if (v.isGenericDict()) {
                auto d = v.toGenericDict();
                std::string keys;
                for (const auto &e : d) {
                        std::string k = e.key().isString()
                                                ? e.key().toStringRef()
                                                : e.key().tagKind();
                        keys += (keys.empty() ? "" : ", ") + k;
                        if (!e.value().isTensor())
                                continue;
                        if ((t.has_output && e.key().isString() &&
                             e.key().toStringRef() == t.output) ||
                            (!t.has_output && d.size() == 1))
                                return e.value().toTensor();
                }
                if (t.has_output)
                        throw std::runtime_error(
                                "the model's result has no tensor \"" +
                                t.output + "\"; its keys: " + keys);
                throw std::runtime_error(
                        "the model returns a dict (keys: " + keys +
                        "); choose one: output = KEY in its model.conf, or "
                        "ML_MODEL_OUTPUT with ML_MODEL_PATH");
        }
        throw std::runtime_error("the model returns a " + v.tagKind() +
                                 ", not a tensor, tuple, list or dict of "
                                 "tensors");
}

// forward() on data, a rows x cols float32 matrix used in place.
c10::IValue forward(mls_torch &t, float *data, size_t rows, size_t cols)
{
        at::Tensor in = torch::from_blob(
                data, {static_cast<int64_t>(rows), static_cast<int64_t>(cols)},
                torch::TensorOptions().dtype(torch::kFloat32));
        std::vector<c10::IValue> args{in};
        return t.module.forward(args);
}

// forward() on data, as a [rows, outputs] contiguous float32 tensor.
at::Tensor run(mls_torch &t, float *data, size_t rows, size_t cols)
{
        c10::InferenceMode guard;
        at::Tensor o = pick(t, forward(t, data, rows, cols));

        if (o.device().type() != c10::DeviceType::CPU)
                throw std::runtime_error("the model returned a tensor that "
                                         "is not on the CPU");
        if (o.dim() == 1)
                o = o.unsqueeze(1);
        if (o.dim() != 2 || o.size(0) != static_cast<int64_t>(rows))
                throw std::runtime_error(
                        "the model returned a tensor of shape " +
                        c10::str(o.sizes()) + " for " + std::to_string(rows) +
                        " input rows; expected [" + std::to_string(rows) +
                        ", outputs]");
        if (o.is_complex())
                throw std::runtime_error("the model returned a complex "
                                         "tensor");
        return o.to(at::kFloat).contiguous();
}

// True when forward() accepts a [2, w] batch of zeros, whatever it returns.
bool accepts(mls_torch &t, size_t w)
{
        std::vector<float> zeros(2 * w, 0.0f);
        try {
                c10::InferenceMode guard;
                forward(t, zeros.data(), 2, w);
                return true;
        } catch (...) {
                return false;
        }
}

size_t discover_width(mls_torch &t)
{
        for (const auto &p : t.module.named_parameters(true)) {
                const at::Tensor &w = p.value;
                if (w.dim() != 2 || !w.is_floating_point())
                        continue;
                size_t cand = static_cast<size_t>(w.size(1));
                if (cand > 0 && accepts(t, cand) && !accepts(t, cand + 1))
                        return cand;
                return 0;
        }
        return 0;
}

} // namespace

extern "C" mls_torch_t *mls_torch_load(const char *path, int threads,
                                       const char *output, size_t width,
                                       size_t *found_width, char *errstr,
                                       size_t errstr_size)
{
        try {
                auto t = std::make_unique<mls_torch>();
                t->threads = threads;
                if (output) {
                        t->has_output = true;
                        t->output = output;
                }
                if (threads > 0)
                        at::set_num_threads(threads);
                t->module = torch::jit::load(path, torch::kCPU);
                t->module.eval();
                *found_width = width ? 0 : discover_width(*t);
                // Check the result type now, so that a model whose output
                // cannot be used fails to load instead of failing on every
                // message. (A configured width is tried by the caller, which
                // can name the setting when the model refuses it.)
                if (*found_width) {
                        std::vector<float> zeros(2 * *found_width, 0.0f);
                        run(*t, zeros.data(), 2, *found_width);
                }
                return t.release();
        } catch (const c10::Error &e) {
                set_err(errstr, errstr_size, brief(e.what_without_backtrace()));
        } catch (const std::exception &e) {
                set_err(errstr, errstr_size, brief(e.what()));
        } catch (...) {
                set_err(errstr, errstr_size, "unknown exception");
        }
        return nullptr;
}

extern "C" int mls_torch_forward(mls_torch_t *t, float *data, size_t rows,
                                 size_t cols, const float **out,
                                 size_t *out_cols, char *errstr,
                                 size_t errstr_size)
{
        try {
                if (t->threads > 0 && at::get_num_threads() != t->threads)
                        at::set_num_threads(t->threads);
                t->last = run(*t, data, rows, cols);
                *out = t->last.data_ptr<float>();
                *out_cols = static_cast<size_t>(t->last.size(1));
                return 0;
        } catch (const c10::Error &e) {
                set_err(errstr, errstr_size, brief(e.what_without_backtrace()));
        } catch (const std::exception &e) {
                set_err(errstr, errstr_size, brief(e.what()));
        } catch (...) {
                set_err(errstr, errstr_size, "unknown exception");
        }
        return -1;
}

extern "C" void mls_torch_free(mls_torch_t *t)
{
        try {
                delete t;
        } catch (...) {
        }
}

extern "C" const char *mls_torch_version(void)
{
        return TORCH_VERSION;
}
