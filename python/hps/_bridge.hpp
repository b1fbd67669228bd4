// Glue between the C++ core and Python (internal to the extension module hps._core):
// exception translation and a LoadObserver that reports to a Python object.
#pragma once

#include <Python.h>

#include <string>

#include "hps/parameter_server.hpp"

namespace hps::python {

/// Thrown by glue code when a Python error is already set (e.g. KeyboardInterrupt raised inside a
/// progress callback); translate_exception() then leaves that error as it is.
struct PythonErrorAlreadySet {};

/// Stores the Python exception classes the C++ error types map to (called once at import).
void register_error_types(PyObject* base, PyObject* config, PyObject* invalid_argument, PyObject* not_found,
                          PyObject* io, PyObject* backend_unavailable, PyObject* out_of_memory);

/// Called by Cython inside `catch (...)`: sets the Python exception matching the C++ one.
void translate_exception();

/// Forwards progress to a Python object with begin(what, total), advance(n) and end() methods.
/// Methods are called with the GIL held; a Python exception raised there aborts the load.
class PyLoadObserver final : public LoadObserver {
 public:
  explicit PyLoadObserver(PyObject* target);
  ~PyLoadObserver() override;
  void begin(const std::string& what, std::size_t total) override;
  void advance(std::size_t rows) override;
  void end() override;

 private:
  void call(const char* method, PyObject* args);
  PyObject* target_;
};

}  // namespace hps::python
