#include "_bridge.hpp"

#include <exception>
#include <new>

#include "hps/error.hpp"

namespace hps::python {

namespace {

struct ErrorTypes {
  PyObject* base = nullptr;
  PyObject* config = nullptr;
  PyObject* invalid_argument = nullptr;
  PyObject* not_found = nullptr;
  PyObject* io = nullptr;
  PyObject* backend_unavailable = nullptr;
  PyObject* out_of_memory = nullptr;
};

ErrorTypes& types() {
  static ErrorTypes t;
  return t;
}

void set_error(PyObject* type, const char* message) {
  PyErr_SetString(type ? type : PyExc_RuntimeError, message);
}

}  // namespace

void register_error_types(PyObject* base, PyObject* config, PyObject* invalid_argument, PyObject* not_found,
                          PyObject* io, PyObject* backend_unavailable, PyObject* out_of_memory) {
  ErrorTypes& t = types();
  for (PyObject* o : {base, config, invalid_argument, not_found, io, backend_unavailable, out_of_memory}) Py_XINCREF(o);
  t = ErrorTypes{base, config, invalid_argument, not_found, io, backend_unavailable, out_of_memory};
}

void translate_exception() {
  const ErrorTypes& t = types();
  try {
    throw;
  } catch (const PythonErrorAlreadySet&) {
    if (!PyErr_Occurred()) set_error(t.base, "a Python callback failed");
  } catch (const ConfigError& e) {
    set_error(t.config, e.what());
  } catch (const InvalidArgument& e) {
    set_error(t.invalid_argument, e.what());
  } catch (const NotFound& e) {
    set_error(t.not_found, e.what());
  } catch (const IOError& e) {
    set_error(t.io, e.what());
  } catch (const BackendUnavailable& e) {
    set_error(t.backend_unavailable, e.what());
  } catch (const OutOfMemory& e) {
    set_error(t.out_of_memory, e.what());
  } catch (const Error& e) {
    set_error(t.base, e.what());
  } catch (const std::bad_alloc&) {
    set_error(t.out_of_memory, "out of host memory");
  } catch (const std::exception& e) {
    set_error(t.base, e.what());
  } catch (...) {
    set_error(t.base, "unknown C++ exception");
  }
}

PyLoadObserver::PyLoadObserver(PyObject* target) : target_(target) { Py_XINCREF(target_); }

PyLoadObserver::~PyLoadObserver() {
  PyGILState_STATE gil = PyGILState_Ensure();
  Py_XDECREF(target_);
  PyGILState_Release(gil);
}

void PyLoadObserver::call(const char* method, PyObject* args) {
  PyGILState_STATE gil = PyGILState_Ensure();
  PyObject* result = nullptr;
  if (args) {
    PyObject* fn = PyObject_GetAttrString(target_, method);
    if (fn) {
      result = PyObject_CallObject(fn, args);
      Py_DECREF(fn);
    }
    Py_DECREF(args);
  }
  // A pending Ctrl-C surfaces here too, so a long load can be interrupted.
  const bool failed = result == nullptr || PyErr_CheckSignals() != 0;
  Py_XDECREF(result);
  PyGILState_Release(gil);
  if (failed) throw PythonErrorAlreadySet{};
}

void PyLoadObserver::begin(const std::string& what, std::size_t total) {
  if (!target_ || target_ == Py_None) return;
  PyGILState_STATE gil = PyGILState_Ensure();
  PyObject* args = Py_BuildValue("(sn)", what.c_str(), static_cast<Py_ssize_t>(total));
  PyGILState_Release(gil);
  call("begin", args);
}

void PyLoadObserver::advance(std::size_t rows) {
  if (!target_ || target_ == Py_None) return;
  PyGILState_STATE gil = PyGILState_Ensure();
  PyObject* args = Py_BuildValue("(n)", static_cast<Py_ssize_t>(rows));
  PyGILState_Release(gil);
  call("advance", args);
}

void PyLoadObserver::end() {
  if (!target_ || target_ == Py_None) return;
  PyGILState_STATE gil = PyGILState_Ensure();
  PyObject* args = PyTuple_New(0);
  PyGILState_Release(gil);
  call("end", args);
}

}  // namespace hps::python
