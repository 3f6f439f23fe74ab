// o365-essentials for C++17: a header-only wrapper of the C ABI (o365_essentials.h).
//
// * o365::integration, o365::cancel_token and o365::sync_loop own their C handles (RAII,
//   move-only);
// * failures throw o365::error carrying the code, its name, the recommended action, the
//   service's code and request-id, and what a cancelled call did (partial_json);
// * callbacks are std::function; an exception thrown in one is caught at the boundary
//   (it never crosses the C ABI), cancels the call, and is rethrown once the call ended;
// * call_async runs a call on a thread of its own and returns a std::future.
//
// Threading: an integration may be shared by threads (calls may run at once); a call's
// event callback runs on the thread that made the call, before the call returns.
#ifndef O365_ESSENTIALS_HPP
#define O365_ESSENTIALS_HPP

#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "o365_essentials.h"

namespace o365 {

/// A failed call: everything the C error object said.
class error : public std::runtime_error {
 public:
  error(o365_result code, const o365_error *e)
      : std::runtime_error(e && o365_error_message(e) ? o365_error_message(e)
                                                     : std::string("o365 error ") +
                                                           std::to_string(code)),
        code_(code),
        action_(str(e ? o365_error_action(e) : nullptr)),
        service_code_(str(e ? o365_error_service_code(e) : nullptr)),
        request_id_(str(e ? o365_error_request_id(e) : nullptr)),
        partial_json_(str(e ? o365_error_partial_json(e) : nullptr)) {}

  /// The result code (`O365_NOT_FOUND`, ...).
  o365_result code() const noexcept { return code_; }
  /// Its stable name (`"not_found"`).
  std::string code_name() const { return str(o365_error_code_name(code_)); }
  /// What to do about it.
  const std::string &action() const noexcept { return action_; }
  /// The service's own code (`Request_BadRequest`), or empty.
  const std::string &service_code() const noexcept { return service_code_; }
  /// The service's request-id for support, or empty.
  const std::string &request_id() const noexcept { return request_id_; }
  /// What a cancelled or interrupted call did (its result shape as JSON), or empty.
  const std::string &partial_json() const noexcept { return partial_json_; }

 private:
  static std::string str(const char *s) { return s ? std::string(s) : std::string(); }
  o365_result code_;
  std::string action_, service_code_, request_id_, partial_json_;
};

namespace detail {
/// Throws for a failed result, freeing the C error first. (Call the C function first and
/// pass its result: argument evaluation order is unspecified.)
inline void check(o365_result r, o365_error *e) {
  if (r == O365_OK) return;
  error ex(r, e);
  o365_error_free(e);
  throw ex;
}

/// Takes an owned C string into a std::string.
inline std::string take(char *s) {
  std::string out = s ? std::string(s) : std::string();
  o365_string_free(s);
  return out;
}
}  // namespace detail

/// A cancellation token: cancel() from any thread stops the calls it was given at
/// their next item boundary.
class cancel_token {
 public:
  cancel_token() {
    if (o365_cancel_new(&t_) != O365_OK) throw std::bad_alloc();
  }
  cancel_token(cancel_token &&o) noexcept : t_(std::exchange(o.t_, nullptr)) {}
  cancel_token &operator=(cancel_token &&o) noexcept {
    if (this != &o) {
      o365_cancel_free(t_);
      t_ = std::exchange(o.t_, nullptr);
    }
    return *this;
  }
  cancel_token(const cancel_token &) = delete;
  cancel_token &operator=(const cancel_token &) = delete;
  ~cancel_token() { o365_cancel_free(t_); }

  void cancel() const noexcept { o365_cancel_trigger(t_); }
  bool cancelled() const noexcept { return o365_cancel_is_triggered(t_) != 0; }
  const o365_cancel *get() const noexcept { return t_; }

 private:
  o365_cancel *t_ = nullptr;
};

/// How a call is steered; all optional.
struct call_options {
  /// Stops the call when triggered.
  const cancel_token *cancel = nullptr;
  /// Each event as JSON; return false to cancel the call. May throw: the exception
  /// cancels the call and is rethrown after it.
  std::function<bool(const std::string &event_json)> on_event;
  /// Wait this long for work held by another process (0: refused at once).
  std::uint32_t lease_wait_ms = 0;
};

/// A running sync loop; stops (after the round's current item) when destroyed.
class sync_loop {
 public:
  using callback = std::function<void(const std::string &event_json)>;
  sync_loop(sync_loop &&o) noexcept
      : l_(std::exchange(o.l_, nullptr)), cb_(std::move(o.cb_)) {}
  sync_loop(const sync_loop &) = delete;
  sync_loop &operator=(const sync_loop &) = delete;
  sync_loop &operator=(sync_loop &&) = delete;
  ~sync_loop() { stop(); }

  /// Stops the loop and returns how many rounds ran; no event arrives afterwards.
  std::uint64_t stop() noexcept {
    std::uint64_t rounds = 0;
    if (l_) o365_sync_loop_stop(std::exchange(l_, nullptr), &rounds);
    return rounds;
  }

 private:
  friend class integration;
  sync_loop(o365_sync_loop *l, std::unique_ptr<callback> cb) : l_(l), cb_(std::move(cb)) {}
  o365_sync_loop *l_ = nullptr;
  std::unique_ptr<callback> cb_;
};

/// An open integration (one configuration, one store).
class integration {
 public:
  /// Opens from the configuration JSON; throws o365::error.
  explicit integration(const std::string &config_json) {
    o365_error *e = nullptr;
    o365_result r = o365_integration_open(config_json.c_str(), &h_, &e);
    detail::check(r, e);
  }
  integration(integration &&o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  integration &operator=(integration &&o) noexcept {
    if (this != &o) {
      o365_integration_free(h_);
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  integration(const integration &) = delete;
  integration &operator=(const integration &) = delete;
  /// Never blocks; calls in flight finish.
  ~integration() { o365_integration_free(h_); }

  /// Runs an operation of the table (see operations()) with JSON parameters and
  /// returns its JSON result; throws o365::error (or what the callback threw).
  std::string call(const std::string &operation, const std::string &params_json = "{}",
                   const call_options &options = call_options()) const {
    struct ctx {
      const call_options *o;
      std::exception_ptr thrown;
    } c{&options, nullptr};
    o365_call_control ctl{};
    ctl.struct_size = sizeof(o365_call_control);
    ctl.cancel = options.cancel ? options.cancel->get() : nullptr;
    ctl.lease_wait_ms = options.lease_wait_ms;
    if (options.on_event) {
      ctl.userdata = &c;
      ctl.on_event = [](void *ud, const char *json) -> int32_t {
        auto *c = static_cast<ctx *>(ud);
        if (c->thrown) return 1;
        try {
          return c->o->on_event(json) ? 0 : 1;
        } catch (...) {
          c->thrown = std::current_exception();
          return 1;
        }
      };
    }
    char *out = nullptr;
    o365_error *e = nullptr;
    o365_result r = o365_call(h_, operation.c_str(), params_json.c_str(), &ctl, &out, &e);
    if (c.thrown) {
      o365_error_free(e);
      o365_string_free(out);
      std::rethrow_exception(c.thrown);
    }
    detail::check(r, e);
    return detail::take(out);
  }

  /// call() on a thread of its own. The integration and the options must outlive it.
  std::future<std::string> call_async(std::string operation, std::string params_json = "{}",
                                      call_options options = call_options()) const {
    return std::async(std::launch::async,
                      [this, op = std::move(operation), p = std::move(params_json),
                       o = std::move(options)]() { return call(op, p, o); });
  }

  /// Starts the sync loop (`{"interval_secs": 300}`); events arrive on a library thread.
  sync_loop start_sync_loop(const std::string &params_json = "{}",
                            sync_loop::callback on_event = nullptr) const {
    auto cb = on_event ? std::make_unique<sync_loop::callback>(std::move(on_event)) : nullptr;
    o365_event_fn fn = nullptr;
    if (cb) {
      fn = [](void *ud, const char *json) -> int32_t {
        try {
          (*static_cast<sync_loop::callback *>(ud))(json);
        } catch (...) {
          // A loop's callback has no call to rethrow into: the exception is dropped.
        }
        return 0;
      };
    }
    o365_sync_loop *l = nullptr;
    o365_error *e = nullptr;
    o365_result r = o365_sync_loop_start(h_, params_json.c_str(), fn, cb.get(), &l, &e);
    detail::check(r, e);
    return sync_loop(l, std::move(cb));
  }

  /// Every operation of the table as JSON (name, params, fields, result, ...).
  static std::string operations() { return o365_operations_json(); }

 private:
  o365_integration *h_ = nullptr;
};

}  // namespace o365

#endif  // O365_ESSENTIALS_HPP
