/* Cass dashboard: plain JavaScript, no build step, no external resources.
 *
 * Reads the daemon's HTTP API (/api/...) with a bearer token kept in sessionStorage,
 * follows /api/events/stream (server-sent events, ?token=) and refreshes what it shows
 * when something happens. Every element a test needs carries a data-testid.
 */
(function () {
  "use strict";

  var TOKEN_KEY = "cass-actions-token";
  var PHASES = ["morning", "afternoon", "evening", "night"];
  var TERMINAL = ["completed", "failed", "expired", "cancelled", "abandoned"];
  var STATUS_LABELS = {
    planned: "Planned", queued: "Queued", running: "Running", completed: "Completed", failed: "Failed",
    budget_blocked: "Blocked: budget", awaiting_approval: "Awaiting approval", expired: "Expired",
    cancelled: "Cancelled", abandoned: "Abandoned"
  };
  // The stream names each event (`event: <type>`), and EventSource has no wildcard: listen to every
  // type the daemon emits. An unknown type still reaches the page through the next refresh.
  var EVENT_TYPES = [
    "day_phase.changed", "day.planned", "plan.changed", "downtime.missed", "listener.failed",
    "action.started", "action.completed", "action.failed", "approval.requested", "approval.resolved",
    "approval.expired", "budget.blocked", "budget.changed", "daemon.paused", "daemon.resumed",
    "category.paused", "category.resumed", "work_unit.cancel_requested"
  ].concat(Object.keys(STATUS_LABELS).map(function (s) { return "work_unit." + s; }));
  var HISTORY_LIMIT = 20;
  var EVENTS_SHOWN = 30;

  var state = {
    token: null,
    date: null,          // the day shown (YYYY-MM-DD); null: the daemon's current day
    status: null,
    lastEventId: 0,
    source: null,
    refreshTimer: null,
    pollTimer: null,
    loading: false,
    again: false
  };

  function $(id) { return document.getElementById(id); }

  // ---------------------------------------------------------------- formatting
  function usd(value) {
    var v = Number(value) || 0;
    // As the CLI's usd(): up to 6 decimals for an amount 4 would show as zero (the ledger counts micro-dollars).
    var decimals = (v !== 0 && Math.abs(v) < 0.00005) ? 6 : 4;
    var text = v.toFixed(decimals).replace(/0+$/, "");
    if ((text.split(".")[1] || "").length < 2) text = v.toFixed(2);
    return "$" + text;
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        var value = attrs[key];
        if (value === null || value === undefined || value === false) return;
        if (key === "text") node.textContent = value;
        else if (key === "className") node.className = value;
        else if (key === "onclick") node.addEventListener("click", value);
        else node.setAttribute(key, value === true ? "" : String(value));
      });
    }
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function statusLabel(status) { return STATUS_LABELS[status] || String(status || "unknown"); }

  function statusBadge(status) {
    return el("span", { className: "badge st-" + String(status || "unknown").replace(/[^a-z_]/g, ""),
                        "data-testid": "status-text", text: statusLabel(status) });
  }

  function localTime(iso) {
    if (!iso) return "";
    var d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso);
    return d.toLocaleString([], { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
                                  timeZoneName: "short" });
  }

  function shiftDate(text, days) {
    var parts = text.split("-").map(Number);
    var d = new Date(Date.UTC(parts[0], parts[1] - 1, parts[2] + days));
    return d.toISOString().slice(0, 10);
  }

  function listOf(payload, keys) {
    // The API returns arrays; tolerate an object wrapping one ({"items": [...]}, {"units": [...]} ...).
    if (Array.isArray(payload)) return payload;
    if (payload && typeof payload === "object") {
      for (var i = 0; i < keys.length; i++) if (Array.isArray(payload[keys[i]])) return payload[keys[i]];
    }
    return [];
  }

  // ---------------------------------------------------------------- notices
  var noticeTimer = null;
  function notice(text, kind) {
    var node = $("notice");
    node.textContent = text;
    node.className = "notice " + (kind || "info");
    node.hidden = false;
    if (noticeTimer) clearTimeout(noticeTimer);
    if (kind !== "error") noticeTimer = setTimeout(function () { node.hidden = true; }, 8000);
  }

  function setLive(text, kind) {
    var node = $("live-status");
    node.textContent = text;
    node.className = "live " + (kind || "");
    node.setAttribute("data-state", kind || "");
  }

  // ---------------------------------------------------------------- token
  function readToken() {
    var params = new URLSearchParams(window.location.search);
    var fromUrl = params.get("token");
    if (fromUrl) {
      // Keep the token out of the address bar (history, screenshots, shared links).
      params.delete("token");
      var rest = params.toString();
      window.history.replaceState(null, "", window.location.pathname + (rest ? "?" + rest : "") + window.location.hash);
      try { sessionStorage.setItem(TOKEN_KEY, fromUrl); } catch (e) { /* storage disabled */ }
      $("token-input").value = fromUrl;
      return fromUrl;
    }
    try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
  }

  function askForToken(message) {
    stopStream();
    $("main").hidden = true;
    $("token-panel").hidden = false;
    var err = $("token-error");
    err.textContent = message || "";
    err.hidden = !message;
    if (state.token && !$("token-input").value) $("token-input").value = state.token;
    setLive("Not connected", "off");
    $("token-input").focus();
  }

  function onTokenSubmit(event) {
    event.preventDefault();
    var value = $("token-input").value.trim();
    if (!value) return;
    state.token = value;
    try { sessionStorage.setItem(TOKEN_KEY, value); } catch (e) { /* storage disabled */ }
    connect();
  }

  // ---------------------------------------------------------------- API
  function ApiError(status, message) { this.status = status; this.message = message; }

  function api(path, options) {
    options = options || {};
    var headers = { "Authorization": "Bearer " + state.token, "Accept": "application/json" };
    var init = { method: options.method || "GET", headers: headers, cache: "no-store" };
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    return fetch("api/" + path, init).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
        if (response.status === 401 || response.status === 403) {
          askForToken("The token was not accepted. Check it and try again.");
          throw new ApiError(response.status, "not authorised");
        }
        if (!response.ok) {
          throw new ApiError(response.status, errorText(data) || (response.status + " " + response.statusText));
        }
        return data;
      });
    });
  }

  function errorText(data) {
    // The API's errors: {"error": "a sentence", "detail": a string, a list of invalid fields, or null}.
    if (!data) return "";
    if (typeof data !== "object") return String(data).slice(0, 300);
    var text = data.error || data.message || "";
    var detail = data.detail;
    if (Array.isArray(detail)) {
      detail = detail.map(function (d) {
        if (d && typeof d === "object") return (d.loc ? [].concat(d.loc).join(".") + ": " : "") + (d.msg || JSON.stringify(d));
        return String(d);
      }).join("; ");
    } else if (detail && typeof detail === "object") {
      detail = JSON.stringify(detail);
    }
    if (detail) text = text ? text + " (" + detail + ")" : String(detail);
    return text;
  }

  function optional(promise) {
    // A part of the API that is missing (404) or failing shows as empty, with a note, not a broken page.
    return promise.catch(function (err) {
      if (err && err.status === 401) throw err;
      return { __error: err && err.message ? err.message : String(err) };
    });
  }

  // ---------------------------------------------------------------- loading
  function refresh() {
    if (!state.token) return Promise.resolve();
    if (state.loading) { state.again = true; return Promise.resolve(); }
    state.loading = true;
    return api("status").then(function (status) {
      state.status = status || {};
      var day = state.date || status.phase_day;
      var q = day ? "date=" + encodeURIComponent(day) : "";
      return Promise.all([
        optional(api("plan" + (q ? "?" + q : ""))),
        optional(api("units" + (q ? "?" + q : ""))),
        // The budget day is a calendar date; the phase day is not (the night runs past midnight):
        // for "today" ask for the daemon's current budget day, for a chosen date that date.
        optional(api("budget" + (state.date ? "?date=" + encodeURIComponent(state.date) : ""))),
        optional(api("approvals?status=pending")),
        optional(api("history?limit=" + HISTORY_LIMIT))
      ]).then(function (r) {
        render(day, status, r[0], r[1], r[2], r[3], r[4]);
      });
    }).then(function () {
      $("main").hidden = false;
      $("token-panel").hidden = true;
      document.body.setAttribute("data-loaded", "true");
    }, function (err) {
      if (err && err.status === 401) return;
      notice("Could not load the dashboard: " + (err && err.message ? err.message : err), "error");
    }).then(function () {
      state.loading = false;
      document.body.setAttribute("data-refreshes", String(Number(document.body.getAttribute("data-refreshes") || 0) + 1));
      if (state.again) { state.again = false; refresh(); }
    });
  }

  function scheduleRefresh() {
    if (state.refreshTimer) return;
    state.refreshTimer = setTimeout(function () { state.refreshTimer = null; refresh(); }, 200);
  }

  // ---------------------------------------------------------------- rendering
  function render(day, status, plan, units, budget, approvals, history) {
    renderHeader(status);
    renderDay(day, status, plan);
    var unitList = units && !units.__error ? listOf(units, ["units", "items"]) :
      (plan && !plan.__error ? listOf(plan.units, []) : []);
    renderTimeline(unitList, day, status, units && units.__error);
    renderApprovals(approvals, unitList);
    renderMoney(budget, status);
    renderHistory(history);
  }

  function daemonPaused(status) {
    // status.daemon_paused: {"by", "at", "reason"} while the whole daemon is paused, null when it is not;
    // absent when this daemon cannot be paused as a whole (then: null, unknown).
    if (!status || !("daemon_paused" in status)) return null;
    var p = status.daemon_paused;
    if (typeof p === "boolean") return p;
    return p !== null && p !== undefined;
  }

  function renderHeader(status) {
    var paused = daemonPaused(status);
    var info = status.daemon_paused && typeof status.daemon_paused === "object" ? status.daemon_paused : null;
    var lease = status.lease;
    var parts = [];
    if (paused === true) {
      parts.push("Paused" + (info && info.by ? " by " + info.by : "") + (info && info.at ? " at " + localTime(info.at) : "") +
                 (info && info.reason ? " (" + info.reason + ")" : "") + ": no new work starts");
    } else if (paused === false) {
      parts.push("Active");
    }
    parts.push(lease ? "scheduler running (pid " + lease.pid + " on " + lease.host + ")" : "scheduler not running");
    var daemonNode = $("daemon-state");
    daemonNode.textContent = "Daemon " + (status.daemon_id || "") + ": " + parts.join("; ");
    daemonNode.setAttribute("data-paused", paused === null ? "unknown" : String(paused));
    var button = $("daemon-toggle");
    button.hidden = paused === null;  // this daemon cannot be paused as a whole: no button that can only fail
    button.textContent = paused ? "Resume daemon" : "Pause daemon";
    button.setAttribute("data-action", paused ? "resume" : "pause");
  }

  function renderDay(day, status, plan) {
    $("day-date").textContent = day || "";
    $("money-day").textContent = day ? "(" + day + ")" : "";
    var isToday = day === status.phase_day;
    $("day-today").disabled = isToday;
    var now = "Now: " + (status.phase || "?") + " of " + (status.phase_day || "?");
    if (status.next_transition) now += "; next phase at " + localTime(status.next_transition);
    if (!isToday) now += ". You are looking at another day.";
    $("now-line").textContent = now;
    var intention = null, source = "";
    if (plan && !plan.__error) {
      intention = plan.intention || (plan.plan && plan.plan.intention) || null;
      if (plan.source) source = "Plan: " + plan.source + (plan.reason ? " — " + plan.reason : "");
      else if (plan.plan === null) source = "No plan for this day yet.";
    } else if (isToday && status.plan) {
      intention = status.plan.intention;
      source = "Plan: " + status.plan.source + (status.plan.reason ? " — " + status.plan.reason : "");
    } else if (plan && plan.__error) {
      source = "Plan not available: " + plan.__error;
    }
    $("intention-text").textContent = intention || "— (none stated)";
    $("plan-source").textContent = source;
    var url = new URL(window.location.href);
    if (state.date) url.searchParams.set("date", state.date); else url.searchParams.delete("date");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }

  function renderTimeline(units, day, status, error) {
    var host = $("phases");
    clear(host);
    if (error) host.appendChild(el("p", { className: "error", text: "Units not available: " + error }));
    var groups = {};
    units.forEach(function (u) { (groups[u.phase] = groups[u.phase] || []).push(u); });
    var phases = PHASES.slice();
    Object.keys(groups).forEach(function (p) { if (phases.indexOf(p) < 0) phases.push(p); });
    phases.forEach(function (phase) {
      var current = day === status.phase_day && phase === status.phase;
      var list = groups[phase] || [];
      var section = el("section", { className: "phase" + (current ? " current" : ""), "data-testid": "phase-" + phase,
                                    "aria-label": phase + (current ? " (current phase)" : "") });
      section.appendChild(el("h3", {}, [phase.charAt(0).toUpperCase() + phase.slice(1),
        current ? el("span", { className: "now-tag", text: "now" }) : null,
        el("span", { className: "muted small", text: " " + list.length + " unit" + (list.length === 1 ? "" : "s") })]));
      if (!list.length) {
        section.appendChild(el("p", { className: "muted small", text: "Nothing planned." }));
      } else {
        var ul = el("ul", { className: "plain units" });
        list.forEach(function (u) { ul.appendChild(unitRow(u)); });
        section.appendChild(ul);
      }
      host.appendChild(section);
    });
  }

  function unitRow(u) {
    var finished = TERMINAL.indexOf(u.status) >= 0;
    var li = el("li", { className: "unit st-row-" + u.status, "data-testid": "unit-row", "data-unit-id": u.id,
                        "data-status": u.status });
    var title = el("div", { className: "unit-head" }, [
      el("span", { className: "unit-name", text: u.name || u.template_id || u.id }),
      statusBadge(u.status)
    ]);
    li.appendChild(title);
    var meta = [u.category, u.estimated_cost_usd !== undefined ? "est. " + usd(u.estimated_cost_usd) : null,
                stepText(u, finished)]
      .filter(Boolean).join(" · ");
    if (meta) li.appendChild(el("p", { className: "muted small", text: meta }));
    if (u.focus) li.appendChild(el("p", { className: "focus", "data-testid": "unit-focus" }, [el("strong", { text: "Focus: " }), u.focus]));
    if (u.motivation) li.appendChild(el("p", { className: "motivation", "data-testid": "unit-motivation" }, [el("strong", { text: "Why: " }), u.motivation]));
    if (u.reason) li.appendChild(el("p", { className: "reason", "data-testid": "unit-reason" }, [el("strong", { text: "Reason: " }), u.reason]));
    if (!finished) {
      var label = u.name || u.template_id || "unit";
      li.appendChild(el("div", { className: "row" }, [
        el("button", { type: "button", className: "danger", "data-testid": "unit-cancel", "aria-label": "Cancel " + label,
                       onclick: function (ev) { cancelUnit(u, ev.currentTarget); }, text: "Cancel" })
      ]));
    }
    return li;
  }

  function stepText(u, finished) {
    if (!u.steps || !u.steps.length) return null;
    var total = u.steps.length, done = Math.min(u.next_step || 0, total);
    if (finished || done >= total) return done + " of " + total + " step" + (total === 1 ? "" : "s") + " done";
    return "next: step " + (done + 1) + " of " + total;
  }

  function renderApprovals(approvals, units) {
    var list = $("approvals-list");
    clear(list);
    var rows = approvals && !approvals.__error ? listOf(approvals, ["approvals", "items"]) : [];
    rows = rows.filter(function (a) { return !a.status || a.status === "pending"; });
    $("approvals-count").textContent = String(rows.length);
    $("approvals-empty").textContent = approvals && approvals.__error ? "Approvals not available: " + approvals.__error
      : "Nothing is waiting for you.";
    $("approvals-empty").hidden = rows.length > 0;
    var byId = {};
    units.forEach(function (u) { byId[u.id] = u; });
    rows.forEach(function (a) {
      var unit = byId[a.unit_id];
      var noteId = "note-" + a.id;
      var li = el("li", { className: "approval", "data-testid": "approval-row", "data-approval-id": a.id,
                          "data-unit-id": a.unit_id });
      li.appendChild(el("p", { className: "approval-head" }, [el("strong", { text: a.action_id || "an action" }),
        unit ? " in " + (unit.name || unit.template_id) : (a.unit_id ? " (unit " + String(a.unit_id).slice(0, 8) + ")" : ""),
        a.step !== undefined && a.step !== null ? ", step " + (Number(a.step) + 1) : ""]));
      if (a.reason) li.appendChild(el("p", { text: a.reason }));
      li.appendChild(el("p", { className: "muted small", text: "Asked " + localTime(a.requested_at) +
        (a.expires_at ? "; expires " + localTime(a.expires_at) : "") }));
      li.appendChild(el("label", { className: "small", "for": noteId, text: "Note (optional)" }));
      li.appendChild(el("input", { id: noteId, type: "text", "data-testid": "approval-note", autocomplete: "off" }));
      var label = (a.action_id || "action");
      li.appendChild(el("div", { className: "row" }, [
        el("button", { type: "button", "data-testid": "approval-approve", "aria-label": "Approve " + label,
                       text: "Approve", onclick: function (ev) { resolveApproval(a, true, ev.currentTarget); } }),
        el("button", { type: "button", className: "danger", "data-testid": "approval-reject", "aria-label": "Reject " + label,
                       text: "Reject", onclick: function (ev) { resolveApproval(a, false, ev.currentTarget); } })
      ]));
      list.appendChild(li);
    });
  }

  function renderMoney(budget, status) {
    var list = $("money-list");
    clear(list);
    if (budget && budget.budget_day) $("money-day").textContent = "(" + budget.budget_day + ")";
    if (!budget || budget.__error) {
      $("money-totals").textContent = "Budget not available" + (budget && budget.__error ? ": " + budget.__error : ".");
      $("money-reserve").textContent = "";
      return;
    }
    var totals = budget.totals || {};
    $("money-totals").textContent = "Daily budget " + usd(budget.daily_usd) + ": " + usd(totals.spent) + " spent, " +
      usd(totals.reserved) + " reserved, " + usd(totals.available) + " available.";
    var paused = (status && status.paused_categories) || [];
    var cats = budget.categories || {};
    Object.keys(cats).forEach(function (name) {
      var c = cats[name];
      var limit = Number(c.limit) || 0, spent = Number(c.spent) || 0, reserved = Number(c.reserved) || 0;
      var scale = Math.max(limit, spent + reserved, 1e-9);
      var over = spent + reserved > limit + 1e-9;
      var isPaused = paused.indexOf(name) >= 0;
      var li = el("li", { className: "money-row", "data-testid": "money-bar", "data-category": name,
                          "data-limit": String(limit), "data-spent": String(spent), "data-reserved": String(reserved),
                          "data-available": String(c.available) });
      li.appendChild(el("div", { className: "money-head" }, [
        el("span", { className: "cat", text: name }),
        isPaused ? el("span", { className: "badge st-paused", text: "Paused" }) : null,
        over ? el("span", { className: "badge st-failed", text: "Over limit" }) : null
      ]));
      var bar = el("div", { className: "bar", "aria-hidden": "true" }, [
        el("span", { className: "seg spent", style: "width:" + (100 * spent / scale).toFixed(2) + "%" }),
        el("span", { className: "seg reserved", style: "width:" + (100 * reserved / scale).toFixed(2) + "%" })
      ]);
      li.appendChild(bar);
      li.appendChild(el("p", { className: "small money-text", "data-testid": "money-text" }, [
        el("span", { "data-testid": "money-spent", text: usd(spent) }), " spent, ",
        el("span", { "data-testid": "money-reserved", text: usd(reserved) }), " reserved of ",
        el("span", { "data-testid": "money-limit", text: usd(limit) }), " (" + usd(c.available) + " available)"]));
      li.appendChild(el("div", { className: "row" }, [
        el("button", { type: "button", className: "secondary small-button", "data-testid": "category-toggle",
                       text: (isPaused ? "Resume " : "Pause ") + name,
                       onclick: function (ev) { toggleCategory(name, !isPaused, ev.currentTarget); } })
      ]));
      list.appendChild(li);
    });
    var r = budget.reserve;
    $("money-reserve").textContent = r ? "Reserve " + usd(r.limit) + " (" + usd(r.used) + " used; only critical work may draw on it)." : "";
  }

  function artifactLink(artifact) {
    var path = artifact.path || artifact.file || "";
    var label = artifact.title || artifact.name || path || artifact.kind || "artifact";
    var href = artifact.url || artifact.href || null;
    var li = el("li", { className: "artifact", "data-testid": "artifact" });
    var url = null;
    if (href) {
      // Links the API gives are its own; the token goes in the query (a plain link sends no header).
      url = new URL(href, window.location.href);
      if (url.protocol !== "http:" && url.protocol !== "https:") url = null;  // never javascript:, data: ...
    }
    if (url) {
      if (url.origin === window.location.origin && url.pathname.indexOf("/api/") >= 0 && !url.searchParams.get("token")) {
        url.searchParams.set("token", state.token);
      }
      li.appendChild(el("a", { href: url.toString(), target: "_blank", rel: "noopener noreferrer", text: label }));
    } else {
      li.appendChild(el("span", { text: label }));
    }
    if (artifact.kind) li.appendChild(el("span", { className: "muted small", text: " (" + artifact.kind + ")" }));
    if (path && path !== label) li.appendChild(el("code", { className: "path", "data-testid": "artifact-path", text: path }));
    return li;
  }

  function renderHistory(history) {
    var list = $("history-list");
    clear(list);
    var rows = history && !history.__error ? listOf(history, ["summaries", "items", "history"]) : [];
    // Newest first, however the API orders them.
    rows = rows.slice().sort(function (a, b) {
      return String(b.finished_at || b.started_at || b.local_date || "").localeCompare(String(a.finished_at || a.started_at || a.local_date || ""));
    }).slice(0, HISTORY_LIMIT);
    $("history-empty").hidden = rows.length > 0;
    if (history && history.__error) {
      $("history-empty").hidden = false;
      $("history-empty").textContent = "History not available: " + history.__error;
    }
    rows.forEach(function (h) {
      var li = el("li", { className: "history-row", "data-testid": "history-row", "data-unit-id": h.unit_id,
                          "data-status": h.status });
      li.appendChild(el("div", { className: "unit-head" }, [
        el("span", { className: "unit-name", text: h.name || h.template_id }), statusBadge(h.status)]));
      li.appendChild(el("p", { className: "muted small", text: [h.local_date, h.phase, h.category,
        "cost " + usd(h.cost_usd), h.finished_at ? "ended " + localTime(h.finished_at) : null].filter(Boolean).join(" · ") }));
      if (h.reason) li.appendChild(el("p", { className: "reason" }, [el("strong", { text: "Reason: " }), h.reason]));
      var arts = Array.isArray(h.artifacts) ? h.artifacts : [];
      if (arts.length) {
        var ul = el("ul", { className: "plain artifacts", "aria-label": "Artifacts" });
        arts.forEach(function (a) { ul.appendChild(artifactLink(a)); });
        li.appendChild(ul);
      }
      if (h.narrative) {
        li.appendChild(el("details", {}, [el("summary", { text: "What happened" }), el("p", { className: "small", text: h.narrative })]));
      }
      list.appendChild(li);
    });
  }

  // ---------------------------------------------------------------- controls
  function busy(button, on) {
    if (!button) return;
    button.disabled = on;
    button.setAttribute("aria-busy", on ? "true" : "false");
  }

  function act(button, path, body, done) {
    busy(button, true);
    return api(path, { method: "POST", body: body || {} }).then(function () {
      notice(done, "ok");
      busy(button, false);
      return refresh();
    }, function (err) {
      if (err && err.status === 401) return;
      notice("Failed: " + (err && err.message ? err.message : err), "error");
      busy(button, false);
    });
  }

  function resolveApproval(a, approve, button) {
    var row = button.closest("[data-approval-id]");
    var noteInput = row ? row.querySelector("[data-testid=approval-note]") : null;
    var note = noteInput && noteInput.value.trim() ? noteInput.value.trim() : undefined;
    // A rejection ends the unit for good: ask first, as Cancel does.
    if (!approve && !window.confirm("Reject " + (a.action_id || "this action") + "? Its unit ends as failed.")) return;
    act(button, "approvals/" + encodeURIComponent(a.id) + "/" + (approve ? "approve" : "reject"),
        note ? { note: note } : {}, (approve ? "Approved " : "Rejected ") + (a.action_id || "the action") + ".");
  }

  function cancelUnit(u, button) {
    var label = u.name || u.template_id || "this unit";
    if (!window.confirm("Cancel " + label + "? It will not run.")) return;
    act(button, "units/" + encodeURIComponent(u.id) + "/cancel", { reason: "cancelled from the dashboard" },
        "Cancelled " + label + ".");
  }

  function toggleDaemon() {
    var button = $("daemon-toggle");
    var action = button.getAttribute("data-action") || "pause";
    act(button, action, {}, action === "pause" ? "The daemon is paused: no new work starts." : "The daemon resumed.");
  }

  function toggleCategory(name, pause, button) {
    act(button, "categories/" + encodeURIComponent(name) + "/" + (pause ? "pause" : "resume"), {},
        (pause ? "Paused " : "Resumed ") + name + ".");
  }

  // ---------------------------------------------------------------- live events
  function eventLine(e) {
    var d = e.data || {};
    var at = e.at ? new Date(e.at) : null;
    var when = at && !isNaN(at.getTime()) ? at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
    var what = e.type;
    if (d.phase && e.type === "day_phase.changed") what += ": " + d.phase + " of " + d.day;
    else if (d.action_id) what += ": " + d.action_id;
    else if (d.template_id) what += ": " + d.template_id;
    if (d.reason) what += " — " + d.reason;
    return (when ? when + "  " : "") + what;
  }

  function onEvent(message) {
    var e;
    try { e = JSON.parse(message.data); } catch (err) { return; }
    if (!e || typeof e !== "object") return;
    var id = Number(e.id || message.lastEventId || 0);
    if (id && id <= state.lastEventId) return;
    if (id) state.lastEventId = id;
    var list = $("events-list");
    list.insertBefore(el("li", { "data-testid": "event", "data-event-type": e.type || message.type, text: eventLine(e) }), list.firstChild);
    while (list.children.length > EVENTS_SHOWN) list.removeChild(list.lastChild);
    $("events-empty").hidden = true;
    scheduleRefresh();
  }

  function stopStream() {
    if (state.source) { state.source.close(); state.source = null; }
  }

  function startStream() {
    stopStream();
    if (!window.EventSource) { setLive("Live updates unavailable (polling)", "off"); return; }
    var url = "api/events/stream?token=" + encodeURIComponent(state.token) +
      (state.lastEventId ? "&since_id=" + state.lastEventId : "");
    var source = new EventSource(url);
    state.source = source;
    setLive("Connecting…", "wait");
    source.onopen = function () { setLive("Live", "on"); scheduleRefresh(); };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        setLive("Live updates stopped (polling every 30 s)", "off");
        // The browser gave up (say the server answered 401 or 404): try again later.
        setTimeout(function () { if (state.source === source) startStream(); }, 15000);
      } else {
        setLive("Reconnecting…", "wait");
      }
    };
    source.onmessage = onEvent;
    EVENT_TYPES.forEach(function (type) { source.addEventListener(type, onEvent); });
  }

  function connect() {
    $("token-error").hidden = true;
    return refresh().then(function () {
      if (!$("main").hidden) startStream();
    });
  }

  // ---------------------------------------------------------------- start
  function start() {
    var params = new URLSearchParams(window.location.search);
    var d = params.get("date");
    if (d && /^\d{4}-\d{2}-\d{2}$/.test(d)) state.date = d;
    $("token-form").addEventListener("submit", onTokenSubmit);
    $("change-token").addEventListener("click", function () { askForToken(""); });
    $("refresh").addEventListener("click", function () { refresh(); });
    $("daemon-toggle").addEventListener("click", toggleDaemon);
    $("day-prev").addEventListener("click", function () { state.date = shiftDate($("day-date").textContent, -1); refresh(); });
    $("day-next").addEventListener("click", function () { state.date = shiftDate($("day-date").textContent, 1); refresh(); });
    $("day-today").addEventListener("click", function () { state.date = null; refresh(); });
    // Without the stream, poll every 30 s; with it, look again every 2 minutes all the same
    // (an event type this page does not know yet, a clock that moved into the next phase).
    var ticks = 0;
    state.pollTimer = setInterval(function () {
      ticks += 1;
      if (!state.token || $("main").hidden) return;
      if (!state.source || state.source.readyState !== 1 || ticks % 4 === 0) refresh();
    }, 30000);
    state.token = readToken();
    if (state.token) connect(); else askForToken("");
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
