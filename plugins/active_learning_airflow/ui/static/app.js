// The Active Learning page: a small vanilla-JS client of this plugin's JSON endpoints (no build step).
// Routes: "#" the projects list, "#project=<name>" one project. Every path is relative to the page,
// so the page works wherever Airflow's API server mounts it.
"use strict";

(() => {
  const LINKS = { airflow: document.body.dataset.airflowBase || "/", mlflow: document.body.dataset.mlflowUi || "" };
  const TRAINING_DAG = "active_learning_training";
  const ENDS_BY = {
    max_steps: "training.max_steps",
    max_epochs: "training.max_epochs, at the steps per epoch so far",
    patience: "training.patience steps after the best evaluation, unless a better one comes",
  };
  const LABEL_COLORS = ["#e53e3e", "#38a169", "#d69e2e", "#805ad5", "#dd6b20", "#319795", "#d53f8c", "#718096"];
  const view = document.getElementById("view");
  const crumbs = document.getElementById("crumbs");
  const notice = document.getElementById("notice");
  const dialog = document.getElementById("dialog");
  let detail = null; // the project shown, as the last GET returned it
  let enabling = false; // the switch was turned on; waiting for the deploy question's answer
  let refreshTimer = null;

  // -- helpers -----------------------------------------------------------------------------------------

  const esc = (value) => String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const q = (name) => encodeURIComponent(name);

  function when(iso) {
    if (!iso) return "—";
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return esc(iso);
    return date.toISOString().slice(0, 19).replace("T", " ") + " UTC";
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const s = Math.round(seconds);
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    return m < 60 ? `${m} min ${s % 60} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
  }

  const score = (value) => (typeof value === "number" ? value.toFixed(3) : "—");

  function badge(status) {
    const cls = { success: "success", failed: "failed", running: "running", queued: "" }[status] ?? "";
    return `<span class="badge ${cls}">${esc(status)}</span>`;
  }

  // What a training's deploy steps did (training_runs.outcome).
  function outcomeBadge(outcome) {
    const cls = { "deployed": "on", "refused by the deploy gate": "due" }[outcome] ?? "";
    return `<span class="badge outcome ${cls}">${esc(outcome)}</span>`;
  }

  const trainingRunUrl = (runId) => `${LINKS.airflow}dags/${TRAINING_DAG}/runs/${q(runId)}`;

  function airflowRunLink(runId) {
    return `<a href="${esc(trainingRunUrl(runId))}" target="_top" title="${esc(runId)}">Airflow run</a>`;
  }

  // Airflow 3's page of a task instance opens on its log, which follows a running task live.
  function trainLogLink(runId) {
    const href = `${trainingRunUrl(runId)}/tasks/train`;
    return `<a href="${esc(href)}" target="_top" class="live-log">live log of the train task</a>`;
  }

  function mlflowRunLink(runId) {
    if (!runId || !LINKS.mlflow) return "";
    return `<a href="${esc(`${LINKS.mlflow}/#/runs/${q(runId)}`)}" target="_blank" rel="noopener">MLflow run</a>`;
  }

  function mlflowModelLink(model) {
    if (!LINKS.mlflow) return esc(model.model_name);
    const href = `${LINKS.mlflow}/#/models/${q(model.registered_name)}/versions/${q(model.version)}`;
    return `<a href="${esc(href)}" target="_blank" rel="noopener" class="mono">${esc(model.model_name)}</a>`;
  }

  function source(value) {
    return value === "active_learning" ? "active learning" : esc(value || "—");
  }

  function problemList(problems) {
    if (!problems.length) return `<span class="ok-text">valid</span>`;
    return `<ul class="errors">${problems.map((p) => `<li>${p.label ? `<b>${esc(p.label)}</b>` : ""}${p.model !== null && p.model !== undefined ? ` <code>${esc(p.model)}</code>` : ""}${p.label || p.model ? ": " : ""}${esc(p.message)}</li>`).join("")}</ul>`;
  }

  function show(message, isError = false) {
    notice.textContent = message;
    notice.classList.toggle("error", isError);
    notice.hidden = false;
    notice.dataset.kind = isError ? "error" : "ok";
  }

  function hideNotice() {
    notice.hidden = true;
  }

  async function api(path, { method = "GET", body } = {}) {
    const options = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const error = new Error(errorMessage(data, response));
      error.status = response.status;
      error.data = data;
      throw error;
    }
    return data;
  }

  function errorMessage(data, response) {
    const detail = data && data.detail;
    if (response.status === 401) return "Your Airflow login has expired: reload the page to log in again.";
    if (!detail) return `${response.status} ${response.statusText}`;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) return detail.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("\n");
    if (detail.message) return detail.message + (detail.problems ? `\n${detail.problems.join("\n")}` : "");
    return JSON.stringify(detail);
  }

  function confirmDialog(title, bodyHtml, okLabel, onOpen) {
    return new Promise((resolve) => {
      document.getElementById("dialog-title").textContent = title;
      document.getElementById("dialog-body").innerHTML = bodyHtml;
      document.getElementById("dialog-ok").textContent = okLabel;
      dialog.returnValue = "";
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.showModal();
      if (onOpen) onOpen(document.getElementById("dialog-body"));
    });
  }

  // -- routing -----------------------------------------------------------------------------------------

  function route() {
    clearTimeout(refreshTimer);
    enabling = false;
    const match = location.hash.match(/^#project=(.+)$/);
    if (match) {
      showProject(decodeURIComponent(match[1]));
    } else {
      detail = null;
      showList();
    }
  }

  // -- the projects list --------------------------------------------------------------------------------

  async function showList() {
    crumbs.innerHTML = "Projects";
    let data;
    try {
      data = await api("api/projects");
    } catch (error) {
      view.innerHTML = `<div class="card error-text">${esc(error.message)}</div>`;
      return;
    }
    const rows = data.projects.map(projectRow).join("");
    view.innerHTML = `
      <section class="card">
        <div class="toolbar">
          <h1>Projects</h1>
          <input type="search" id="filter" placeholder="Filter by project name" aria-label="Filter by project name">
          <span class="spacer"></span>
          <span class="muted small" id="list-summary">${data.projects.length} projects · counted ${when(data.as_of)} · ${esc(data.elapsed_ms)} ms</span>
        </div>
        <table class="grid" id="projects">
          <thead><tr>
            <th>Project</th><th>Active learning</th><th class="num">Every</th><th>Auto-deploy</th>
            <th>Completions</th><th>Deployed model</th><th>Last training</th><th>Labeling config</th>
          </tr></thead>
          <tbody>${rows || `<tr><td colspan="8" class="muted">No projects yet: import one with <code>active-learning import</code>.</td></tr>`}</tbody>
        </table>
      </section>`;
    const filter = document.getElementById("filter");
    filter.addEventListener("input", () => {
      const needle = filter.value.trim().toLowerCase();
      for (const tr of document.querySelectorAll("#projects tbody tr[data-name]")) {
        tr.hidden = needle !== "" && !tr.dataset.name.toLowerCase().includes(needle);
      }
    });
  }

  function projectRow(p) {
    const on = p.active_learning;
    const progress = `<progress max="${p.frequency}" value="${Math.min(p.since_last_training, p.frequency)}"></progress>`;
    const last = p.last_training;
    const lastCell = last
      ? `${badge(last.status)} <span class="muted">${source(last.source)}</span><br><span class="small nowrap">${when(last.started_at)}</span><br>
         <span class="small">${last.airflow_run ? airflowRunLink(last.run_key) : `<span class="muted" title="${esc(last.run_key)}">not an Airflow run</span>`}
         ${last.mlflow_run_id ? ` · ${mlflowRunLink(last.mlflow_run_id)}` : ""}</span>`
      : `<span class="muted">never trained</span>`;
    return `
      <tr data-name="${esc(p.name)}">
        <td class="project"><a href="#project=${q(p.name)}" class="project-link">${esc(p.name)}</a></td>
        <td><span class="badge ${on ? "on" : ""}">${on ? "on" : "off"}</span></td>
        <td class="num ${on ? "" : "muted"}">${p.frequency}</td>
        <td class="${on ? "" : "muted"}">${p.auto_deploy ? "yes" : "no"}</td>
        <td class="scores"><b>${p.completions}</b> total<br>
          <span class="small">${p.since_last_training} since last training</span>
          ${!on ? "" : `${progress} ${p.due ? `<span class="badge due">due</span>` : `<span class="small muted">${p.to_next_training} to next</span>`}`}</td>
        <td>${p.deployed_model ? `<code class="nowrap">${esc(p.deployed_model)}</code><br><span class="small muted">${p.deployed_trained_at ? `trained ${when(p.deployed_trained_at)}` : "pretrained"}</span>` : `<span class="muted">—</span>`}</td>
        <td>${lastCell}</td>
        <td>${problemList(p.problems)}</td>
      </tr>`;
  }

  // -- one project --------------------------------------------------------------------------------------

  async function showProject(name, { quiet = false } = {}) {
    crumbs.innerHTML = `<a href="#">Projects</a> / <span id="crumb-project">${esc(name)}</span>`;
    try {
      detail = await api(`api/project?project=${q(name)}`);
    } catch (error) {
      if (!quiet) view.innerHTML = `<div class="card error-text">${esc(error.message)}</div>`;
      return;
    }
    renderProject();
    scheduleRefresh();
  }

  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    if (!detail) return;
    const busy = detail.pending_runs.length > 0 || detail.history.some((t) => t.status === "running");
    if (!busy) return;
    refreshTimer = setTimeout(() => {
      if (dialog.open || enabling || !detail) return scheduleRefresh();
      showProject(detail.project.name, { quiet: true });
    }, 4000);
  }

  function renderProject() {
    const d = detail;
    const p = d.project;
    const perms = d.permissions;
    view.innerHTML = `
      <div class="toolbar"><h1 id="project-title">${esc(p.name)}</h1>
        <span class="badge ${p.active_learning ? "on" : ""}">active learning ${p.active_learning ? "on" : "off"}</span>
        <span class="muted small" id="trigger">${triggerText(d)}</span>
        <span class="spacer"></span>
        <span class="muted small">config revision <b id="config-revision">${p.config_revision}</b></span>
      </div>
      <div class="grid-2">
        <section class="card" id="settings-card">${settingsHtml(d)}</section>
        <section class="card" id="validation-card">
          <h2>Labeling config</h2>
          ${problemList(d.validation.problems)}
          <p class="muted small">Checked against ${d.validation.source === "mlflow" ? "MLflow's registered models" : "the models in the training history (MLflow unreachable)"} and the pretrained models.</p>
        </section>
      </div>
      <section class="card" id="queue-card">${queueHtml(d.queue)}</section>
      <section class="card" id="history-card">${historyHtml(d)}</section>
      <section class="card curve" id="curve-card">${curveHtml(d.learning_curve)}</section>
      <section class="card" id="models-card">${modelsHtml(d, perms)}</section>
      <section class="card" id="revisions-card">${revisionsHtml(d, perms)}</section>`;
    wireSettings();
    wireModels();
    wireRevisions();
  }

  // What starts its trainings: Label Studio's webhook when one was received (kept a day), else the poll alone.
  function triggerText(d) {
    if (d.project.source !== "label_studio") return "trainings start at the poll, or when an import tells Airflow";
    return d.webhook_last_received_at
      ? `trainings start on Label Studio's webhook (last delivery ${when(d.webhook_last_received_at)}) and at the poll`
      : "polled only: no webhook delivery from Label Studio in the last day";
  }

  function settingsHtml(d) {
    const p = d.project;
    const may = d.permissions.can_change_settings;
    const mayAuto = may && d.permissions.can_deploy; // auto-deploy decides what goes live: a deployer's choice
    const keepsAuto = mayAuto ? "" : 'disabled title="changing auto-deploy needs permission to deploy"';
    const options = d.project.frequencies.map((n) => `<option value="${n}" ${n === p.frequency ? "selected" : ""}>${n}</option>`).join("");
    const dag = d.training_dag;
    const dagNote = !dag.loaded
      ? `<p class="error-text small">Airflow has not loaded <code>${TRAINING_DAG}</code> yet.</p>`
      : dag.paused ? `<p class="error-text small"><code>${TRAINING_DAG}</code> is paused in Airflow: trainings wait until it is unpaused.</p>` : "";
    return `
      <h2>Active learning</h2>
      <div class="settings">
        <div class="line">
          <label class="switch"><input type="checkbox" role="switch" id="al-switch" ${p.active_learning ? "checked" : ""} ${may ? "" : "disabled"}> Active learning</label>
          <span id="frequency-wrap" ${p.active_learning ? "" : "hidden"}>
            <label for="frequency">retrain every</label>
            <select id="frequency" ${may ? "" : "disabled"}>${options}</select>
            <span>new completions</span>
          </span>
        </div>
        <div class="question" id="enable-question" hidden>
          <p>Deploy a newly trained model into the labeling config right after training?</p>
          <div class="buttons">
            <button type="button" class="primary" id="enable-deploy-yes" ${p.auto_deploy ? "" : keepsAuto}>Yes, deploy it after training</button>
            <button type="button" id="enable-deploy-no" ${p.auto_deploy ? keepsAuto : ""}>No, only register it</button>
            <button type="button" class="link" id="enable-cancel">Cancel</button>
          </div>
        </div>
        <div class="line" id="auto-deploy-line" ${p.active_learning ? "" : "hidden"}>
          <label class="switch"><input type="checkbox" role="switch" id="auto-deploy" ${p.auto_deploy ? "checked" : ""} ${keepsAuto}> Deploy after training</label>
          <span class="muted small">${p.auto_deploy ? "each new model goes into the config if it scores at least as well as the deployed one" : "new models are only registered, for a person to deploy"}</span>
        </div>
        <details id="training-params"><summary>Training parameters</summary>${paramsHtml(d.training_params, may)}</details>
        <details id="notifications"><summary>Notifications</summary>${notificationsHtml(d.notifications, may)}</details>
        <div class="line">
          <span><b id="completions-total">${p.completions}</b> completions, <b id="since-last">${p.since_last_training}</b> since the last training</span>
          ${p.active_learning ? `<progress max="${p.frequency}" value="${Math.min(p.since_last_training, p.frequency)}"></progress>` : ""}
          <span class="muted small">${p.due ? "due at the next poll" : p.active_learning ? `${p.to_next_training} to the next training` : ""}</span>
        </div>
        <div class="line">
          <button type="button" class="primary" id="train-now" ${d.permissions.can_train ? "" : "disabled"}>Train now</button>
          <span class="muted small">runs <code>${TRAINING_DAG}</code> in Airflow (source manual, deploy auto)</span>
        </div>
        <div class="line muted small">Deployed model: ${p.deployed_model ? `<code id="deployed-model">${esc(p.deployed_model)}</code>${p.deployed_trained_at ? `, trained ${when(p.deployed_trained_at)}` : " (pretrained)"}` : `<span id="deployed-model">none</span>`}</div>
        ${dagNote}
        ${may && d.permissions.can_deploy ? "" : `<p class="muted small" id="read-only-note">You can look at this project; changing it needs permission to trigger the active-learning DAGs in Airflow.</p>`}
      </div>`;
  }

  // Empty: the deployment's or ner.cfg's value, shown as the placeholder; the source says which.
  function paramsHtml(rows, may) {
    const body = rows.map((r) => `
      <tr><td><code>${esc(r.name)}</code></td>
        <td>${r.choices.length ? paramChoice(r, may) : `<input size="${typeof r.value === "string" ? 28 : 9}" data-param="${esc(r.name)}"
          value="${r.source === "project" ? esc(String(r.value)) : ""}" placeholder="${typeof r.value === "object" ? "schedule" : esc(String(r.value))}"
          title="${esc(r.description)}" ${may ? "" : "disabled"}>`}</td>
        <td class="muted small">${esc(r.source)}</td></tr>`).join("");
    return `<table class="grid"><thead><tr><th>Parameter</th><th>Project's value</th><th>From</th></tr></thead><tbody>${body}</tbody></table>
      <button type="button" id="save-params" ${may ? "" : "disabled"}>Save parameters</button>`;
  }

  // A parameter of few values: its choices, and an empty one that leaves it to the deployment or the default (shown).
  function paramChoice(r, may) {
    const own = r.source === "project" ? r.value : "";
    const options = [`<option value="">${esc(r.source === "project" ? "(not the project's)" : `${r.value} (${r.source})`)}</option>`]
      .concat(r.choices.map((c) => `<option value="${esc(c)}" ${c === own ? "selected" : ""}>${esc(c)}</option>`));
    return `<select data-param="${esc(r.name)}" title="${esc(r.description)}" ${may ? "" : "disabled"}>${options.join("")}</select>`;
  }

  // Who is e-mailed when a training ends or fails: the deployment's recipients (read-only here) and the project's own.
  function notificationsHtml(n, may) {
    const deployment = n.recipients.filter((r) => r.source === "deployment").map((r) => `<code>${esc(r.email)}</code>`).join(", ");
    const own = n.recipients.filter((r) => r.source === "project").map((r) => r.email).join(", ");
    return `<div class="line small">Always e-mailed (the deployment's <code>ACTIVE_LEARNING_NOTIFY_EMAIL</code>): ${deployment || `<span class="muted">nobody</span>`}</div>
      <div class="line"><label for="notify-emails">This project's own recipients</label>
        <input id="notify-emails" size="60" value="${esc(own)}" placeholder="addresses, separated by commas" ${may ? "" : "disabled"}>
        <button type="button" id="save-notifications" ${may ? "" : "disabled"}>Save recipients</button></div>
      <div class="muted small">E-mail through the Airflow connection <code>${esc(n.smtp_connection || "[email] email_conn_id (default smtp_default)")}</code>;
        chat through <code>${esc(n.apprise_connection)}</code>, when it exists.</div>`;
  }

  function saveNotifications() {
    const emails = document.getElementById("notify-emails").value.split(",").map((e) => e.trim()).filter(Boolean);
    return saveForm("notifications", { emails });
  }

  // A form's change: the answer's message, then the project again; a refusal's message, keeping what was typed.
  async function saveForm(route, body) {
    const name = detail.project.name;
    try {
      const result = await api(`api/project/${route}?project=${q(name)}`, { method: "POST", body });
      show(result.message);
    } catch (error) {
      show(error.message, true);
      return; // keep what was typed, to correct it
    }
    await showProject(name);
  }

  function saveParams() {
    const set = {};
    const unset = [];
    for (const row of detail.training_params) {
      const text = document.querySelector(`[data-param="${CSS.escape(row.name)}"]`).value.trim();
      // a bad value comes back with its message
      if (text) set[row.name] = text === "true" || text === "false" ? text === "true" : isNaN(Number(text)) ? text : Number(text);
      else if (row.source === "project") unset.push(row.name);
    }
    return saveForm("training-params", { config_revision: detail.project.config_revision, set, unset });
  }

  function wireSettings() {
    const sw = document.getElementById("al-switch");
    const freq = document.getElementById("frequency");
    const wrap = document.getElementById("frequency-wrap");
    const question = document.getElementById("enable-question");
    const autoLine = document.getElementById("auto-deploy-line");
    const p = detail.project;

    sw.addEventListener("change", () => {
      if (sw.checked && !p.active_learning) {
        enabling = true; // show the dropdown and ask the deploy question; nothing is saved yet
        wrap.hidden = false;
        question.hidden = false;
        question.querySelector("button:not([disabled])").focus();
      } else if (!sw.checked && enabling) {
        cancelEnabling();
      } else if (!sw.checked) {
        wrap.hidden = true;
        autoLine.hidden = true;
        saveSettings({ active_learning: false });
      }
    });
    const answer = (autoDeploy) => saveSettings({ active_learning: true, frequency: Number(freq.value), auto_deploy: autoDeploy });
    document.getElementById("enable-deploy-yes").addEventListener("click", () => answer(true));
    document.getElementById("enable-deploy-no").addEventListener("click", () => answer(false));
    document.getElementById("enable-cancel").addEventListener("click", cancelEnabling);
    freq.addEventListener("change", () => {
      if (!enabling && p.active_learning) saveSettings({ frequency: Number(freq.value) });
    });
    document.getElementById("auto-deploy").addEventListener("change", (event) => saveSettings({ auto_deploy: event.target.checked }));
    document.getElementById("train-now").addEventListener("click", trainNow);
    document.getElementById("save-params").addEventListener("click", saveParams);
    document.getElementById("save-notifications").addEventListener("click", saveNotifications);

    function cancelEnabling() {
      enabling = false;
      sw.checked = false;
      wrap.hidden = true;
      question.hidden = true;
    }
  }

  async function saveSettings(changes) {
    const name = detail.project.name;
    try {
      const result = await api(`api/project/settings?project=${q(name)}`, {
        method: "POST",
        body: { config_revision: detail.project.config_revision, ...changes },
      });
      show(result.message);
    } catch (error) {
      show(error.message, true);
    }
    enabling = false;
    await showProject(name);
  }

  async function trainNow() {
    const name = detail.project.name;
    const button = document.getElementById("train-now");
    button.disabled = true;
    try {
      const run = await api(`api/project/train?project=${q(name)}`, { method: "POST", body: { deploy: "auto" } });
      show(`Training queued in Airflow: run ${run.dag_run_id}`);
    } catch (error) {
      show(error.message, true);
    }
    await showProject(name);
  }

  function historyHtml(d) {
    const pending = d.pending_runs.map((run) => `
      <tr class="pending" data-run="${esc(run.run_id)}">
        <td>${when(run.started_at || run.queued_at)}</td><td>manual</td><td class="num">—</td><td>${badge(run.state)}</td>
        <td>—</td><td colspan="4" class="muted">waiting for Airflow to start the training</td>
        <td>${airflowRunLink(run.run_id)}</td>
      </tr>`).join("");
    const rows = d.history.map((t) => {
      const m = t.metrics;
      const labels = m && m.per_label ? Object.entries(m.per_label).map(([label, s]) =>
        `<span title="P ${score(s.precision)} · R ${score(s.recall)} · F1 ${score(s.f1)}">${esc(label)} ${score(s.f1)}</span>`).join(" · ") : "";
      return `
      <tr data-run="${esc(t.run_key)}">
        <td>${when(t.started_at)}</td>
        <td>${source(t.source)}</td>
        <td class="num">${t.completions_used ?? "—"}</td>
        <td>${badge(t.status)}${t.outcome ? `<br>${outcomeBadge(t.outcome)}` : ""}</td>
        <td>${duration(t.duration_seconds)}</td>
        <td class="num">${score(m && m.precision)}</td><td class="num">${score(m && m.recall)}</td><td class="num"><b>${score(m && m.f1)}</b></td>
        <td><div class="labels">${labels}</div>${t.model_name ? `<code class="small">${esc(t.model_name)}</code>` : ""}
          ${t.base_model ? `<div class="small muted base-model">started from ${esc(t.base_model)}</div>` : ""}
          ${t.deploy ? `<div class="small muted">${esc(t.deploy)}</div>` : ""}${t.error ? `<div class="small error-text">${esc(t.error)}</div>` : ""}</td>
        <td class="small">${t.airflow_run ? airflowRunLink(t.run_key) : `<span class="muted" title="${esc(t.run_key)}">CLI</span>`}
          ${t.mlflow_run_id ? `<br>${mlflowRunLink(t.mlflow_run_id)}` : ""}</td>
      </tr>${t.status === "running" ? progressRow(t) : ""}`;
    }).join("");
    return `
      <h2>Training history</h2>
      <table class="grid" id="history">
        <thead><tr><th>Started</th><th>Source</th><th class="num">Completions used</th><th>Status</th><th>Duration</th>
          <th class="num">Precision</th><th class="num">Recall</th><th class="num">F1</th><th>Per label (F1), model</th><th>Links</th></tr></thead>
        <tbody>${pending}${rows || (pending ? "" : `<tr><td colspan="10" class="muted">No training yet.</td></tr>`)}</tbody>
      </table>`;
  }

  // A running training, as of spaCy's last evaluation (training/progress.py writes it).
  function progressRow(t) {
    const p = t.progress;
    const log = t.airflow_run ? ` · ${trainLogLink(t.run_key)}` : "";
    if (!p) {
      return `<tr class="live" data-progress-for="${esc(t.run_key)}"><td colspan="10" class="small muted">
        Preparing; the progress shows from spaCy's first evaluation on the dev set${log}</td></tr>`;
    }
    const end = p.estimate;
    const losses = Object.entries(p.losses || {}).map(([name, value]) => `${esc(name)} ${Number(value).toFixed(2)}`).join(", ");
    const toGo = end && end.remaining_seconds !== null ? ` · about <b class="live-remaining">${duration(end.remaining_seconds)}</b> to go` : "";
    return `
      <tr class="live" data-progress-for="${esc(t.run_key)}"><td colspan="10" class="small">
        ${end ? `<progress max="${Number(end.end_step)}" value="${Math.min(Number(p.step), Number(end.end_step))}"></progress>` : ""}
        step <b class="live-step">${esc(p.step)}</b>${end ? `, ends by step ${esc(end.end_step)} <span class="muted" title="${esc(ENDS_BY[end.ends_by] || "")}">(${esc(end.ends_by)})</span>` : ""}
        · epoch ${esc(p.epoch)} · best dev F1 <b class="live-best">${score(p.best_f1)}</b> <span class="muted">(step ${esc(p.best_step)}; this evaluation ${score(p.dev_f1)})</span>
        · ${duration(p.elapsed_seconds)} elapsed${toGo}
        ${p.refit ? `· <b class="live-refit">refitting</b> on every task: ${esc(p.refit.steps)} steps` : ""}
        <span class="muted">· loss since the evaluation before: ${losses || "—"} · as of ${when(p.updated_at)}</span>
        ${p.mlflow_behind ? `· <span class="error-text">MLflow is ${esc(p.mlflow_behind)} evaluation(s) behind: unreachable, training goes on</span>` : ""}${log}
      </td></tr>`;
  }

  function queueHtml(queue) {
    const strategy = `<code id="queue-strategy">${esc(queue.strategy)}</code>`;
    if (queue.awaiting === null) return `<h2>Annotation queue</h2><p class="muted">In Label Studio: its Data Manager sorts tasks by
      the pre-annotation score of ${queue.deployed_model ? `<code>${esc(queue.deployed_model)}</code>` : "the deployed model"}
      (strategy ${strategy}).</p>`;
    const models = Object.entries(queue.predicted).map(([model, n]) => `<code class="small">${esc(model)}</code> ${n}`).join(" · ");
    const rows = queue.next.map((e) => `<tr><td><code>${esc(e.task)}</code></td><td class="task-text">${markedText(e.text, e.spans)}</td>
      <td><code class="small">${esc(e.strategy)}</code></td><td class="num">${score(e.score)}</td></tr>`).join("");
    return `
      <h2>Annotation queue</h2>
      <p><b id="queue-awaiting">${queue.awaiting}</b> tasks await annotation; pre-annotated: ${models || "none yet"}. Strategy: ${strategy}
        (the training parameter <code>queue.strategy</code>).</p>
      ${rows ? `<p class="muted small">Next to annotate, with the deployed model's entities (<code>active-learning next --project …</code> lists more):</p>
      <table class="grid" id="queue"><thead><tr><th>Task</th><th>Text</th><th>Ranked by</th><th class="num">Confidence</th></tr></thead><tbody>${rows}</tbody></table>`
      : `<p class="muted">${esc(queue.note || "No task awaits annotation.")}</p>`}`;
  }

  // The text with each predicted span marked; offsets count code points, as Python's do (an emoji is one).
  function markedText(text, spans) {
    const chars = Array.from(text || "");
    const part = (from, to) => esc(chars.slice(from, to).join(""));
    let html = "", at = 0;
    for (const span of spans) {
      if (span.start < at) continue;
      html += `${part(at, span.start)}<mark title="${esc(span.label)}">${part(span.start, span.end)}<sub>${esc(span.label)}</sub></mark>`;
      at = span.end;
    }
    return html + part(at);
  }

  function curveHtml(rows) {
    if (!rows.length) return `<h2>Learning curve</h2><p class="muted">Appears once a model has been trained.</p>`;
    const W = 720, H = 300, L = 46, R = 130, T = 14, B = 38;
    const xs = rows.map((r) => r.completions);
    let x0 = Math.min(...xs), x1 = Math.max(...xs);
    if (x0 === x1) { x0 = Math.max(0, x0 - 10); x1 += 10; }
    const X = (v) => L + ((v - x0) / (x1 - x0)) * (W - L - R);
    const Y = (v) => T + (1 - v) * (H - T - B);
    const labels = Object.keys(rows[0]).filter((k) => k.startsWith("f1_")).map((k) => k.slice(3));
    const line = (key) => rows.filter((r) => r[key] !== "" && r[key] !== null && r[key] !== undefined)
      .map((r) => `${X(r.completions).toFixed(1)},${Y(Number(r[key])).toFixed(1)}`).join(" ");
    let svg = "";
    for (const v of [0, 0.25, 0.5, 0.75, 1]) {
      svg += `<line class="gridline" x1="${L}" x2="${W - R}" y1="${Y(v)}" y2="${Y(v)}"/><text x="${L - 6}" y="${Y(v) + 4}" text-anchor="end">${v.toFixed(2)}</text>`;
    }
    for (const v of [...new Set(xs)]) svg += `<text x="${X(v)}" y="${H - B + 16}" text-anchor="middle">${v}</text>`;
    svg += `<line class="axis" x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}"/><line class="axis" x1="${L}" x2="${L}" y1="${T}" y2="${H - B}"/>`;
    svg += `<text x="${(L + W - R) / 2}" y="${H - 4}" text-anchor="middle">completions trained on</text>`;
    labels.forEach((label, i) => {
      const color = LABEL_COLORS[i % LABEL_COLORS.length];
      svg += `<polyline class="label-line" stroke="${color}" points="${line(`f1_${label}`)}"/>`;
      svg += `<text class="legend" x="${W - R + 12}" y="${T + 34 + i * 16}" fill="${color}">- - ${esc(label)}</text>`;
    });
    svg += `<polyline class="overall" points="${line("f1")}"/>`;
    for (const r of rows) svg += `<circle cx="${X(r.completions)}" cy="${Y(r.f1)}" r="4" fill="#017cee"><title>${esc(r.model_name)}: F1 ${score(r.f1)} on ${r.completions} completions</title></circle>`;
    svg += `<text class="legend" x="${W - R + 12}" y="${T + 14}" fill="#017cee">━ all labels</text>`;
    return `<h2>Learning curve</h2><p class="muted small">Dev F1 of each trained model against the completions it was trained on.</p>
      <svg viewBox="0 0 ${W} ${H}" role="img" aria-label="learning curve" id="learning-curve">${svg}</svg>`;
  }

  function modelsHtml(d, perms) {
    if (d.models_error) return `<h2>Models</h2><p class="error-text">MLflow could not be reached: ${esc(d.models_error)}</p>`;
    const rows = d.models.map((m) => `
      <tr data-model="${esc(m.model_name)}">
        <td>${mlflowModelLink(m)} ${m.in_config ? `<span class="badge on" title="named by the live labeling config">deployed</span>` : m.deployed ? `<span class="badge" title="last deployed, but the live config (after a rollback or an edit) no longer names it">deployed before</span>` : ""}
          ${m.aliases.filter((a) => a !== "deployed").map((a) => `<span class="badge">${esc(a)}</span>`).join(" ")}</td>
        <td class="num">${m.version}</td>
        <td>${when(m.trained_at)}</td>
        <td>${m.source === "manual" ? "manual" : m.source ? "automatic" : "—"}</td>
        <td class="num">${m.completions_used ?? "—"}</td>
        <td class="num">${score(m.metrics && m.metrics.precision)}</td><td class="num">${score(m.metrics && m.metrics.recall)}</td>
        <td class="num"><b>${score(m.metrics && m.metrics.f1)}</b></td>
        <td>${m.in_config ? "" : `<button type="button" data-deploy="${esc(m.model_name)}" ${perms.can_deploy ? "" : "disabled"}>Deploy…</button>`}</td>
      </tr>`).join("");
    return `
      <div class="toolbar"><h2>Models</h2><span class="spacer"></span>
        <input type="search" id="model-filter" placeholder="Filter models by name" aria-label="Filter models by name"></div>
      <table class="grid" id="models">
        <thead><tr><th>Model</th><th class="num">Version</th><th>Trained</th><th>Training</th><th class="num">Completions</th>
          <th class="num">Precision</th><th class="num">Recall</th><th class="num">F1</th><th></th></tr></thead>
        <tbody>${rows || `<tr><td colspan="9" class="muted">No registered model yet.</td></tr>`}</tbody>
      </table>`;
  }

  function wireModels() {
    const filter = document.getElementById("model-filter");
    if (filter) {
      filter.addEventListener("input", () => {
        const needle = filter.value.trim().toLowerCase();
        for (const tr of document.querySelectorAll("#models tbody tr[data-model]")) {
          tr.hidden = needle !== "" && !tr.dataset.model.toLowerCase().includes(needle);
        }
      });
    }
    for (const button of document.querySelectorAll("button[data-deploy]")) {
      button.addEventListener("click", () => deployModel(button.dataset.deploy));
    }
  }

  function comparisonHtml(c) {
    const cand = c.candidate, dep = c.deployed;
    const metric = (side, key) => (side && side.metrics ? side.metrics[key] : undefined);
    const labelMetric = (side, label) => (side && side.metrics && side.metrics.per_label && side.metrics.per_label[label] ? side.metrics.per_label[label].f1 : undefined);
    const cmp = (a, b) => (typeof a === "number" && typeof b === "number" ? (a > b ? "better" : a < b ? "worse" : "") : "");
    const labels = [...new Set([...Object.keys((cand && cand.metrics && cand.metrics.per_label) || {}), ...Object.keys((dep && dep.metrics && dep.metrics.per_label) || {})])];
    const row = (name, a, b) => `<tr><th>${name}</th><td class="${cmp(a, b)}">${score(a)}</td><td>${score(b)}</td></tr>`;
    return `
      <table class="cmp" id="comparison">
        <thead><tr><th></th><th>${esc(cand.model_name)}</th><th>${dep ? esc(dep.model_name) : "nothing of ours deployed"}</th></tr></thead>
        <tbody>
          <tr><th>trained</th><td>${when(cand.trained_at)}</td><td>${dep ? (dep.trained_at ? when(dep.trained_at) : "pretrained") : "—"}</td></tr>
          <tr><th>completions</th><td>${cand.completions_used ?? "—"}</td><td>${dep ? dep.completions_used ?? "—" : "—"}</td></tr>
          ${row("precision", metric(cand, "precision"), metric(dep, "precision"))}
          ${row("recall", metric(cand, "recall"), metric(dep, "recall"))}
          ${row("F1", metric(cand, "f1"), metric(dep, "f1"))}
          ${labels.map((label) => row(`F1 ${esc(label)}`, labelMetric(cand, label), labelMetric(dep, label))).join("")}
        </tbody>
      </table>
      <p class="muted small">Scores on each model's own dev set when it was trained. A manual deploy is not gated.</p>`;
  }

  async function deployModel(model) {
    const name = detail.project.name;
    const revision = detail.project.config_revision;
    let comparison;
    try {
      comparison = await api(`api/project/comparison?project=${q(name)}&model_name=${q(model)}`);
    } catch (error) {
      show(error.message, true);
      return;
    }
    const body = `${comparisonHtml(comparison)}
      <p><button type="button" id="rescore">Score both now on the evaluation set</button> <span id="rescore-result" class="small"></span></p>
      <p>Every label of the labeling config not tied to a pretrained model will name <code>${esc(model)}</code>; the current config stays as revision ${revision}.</p>`;
    const ok = await confirmDialog(`Deploy ${model}?`, body, "Deploy", (root) => {
      root.querySelector("#rescore").addEventListener("click", async (event) => {
        const out = root.querySelector("#rescore-result");
        event.target.disabled = true;
        out.textContent = "scoring both models…";
        try {
          const scored = await api(`api/project/comparison?project=${q(name)}`, { method: "POST", body: { model_name: model } });
          out.textContent = scored.rescored.description;
        } catch (error) {
          out.textContent = error.message;
        }
      });
    });
    if (!ok) return;
    try {
      const result = await api(`api/project/deploy?project=${q(name)}`, { method: "POST", body: { model_name: model, config_revision: revision } });
      show(result.message);
    } catch (error) {
      show(error.message, true);
    }
    await showProject(name);
  }

  function revisionsHtml(d, perms) {
    const rows = d.revisions.map((r) => `
      <tr data-revision="${r.revision}">
        <td class="num">${r.revision} ${r.live ? `<span class="badge on">live</span>` : ""}</td>
        <td>${when(r.created_at)}</td><td>${esc(r.author)}</td><td>${esc(r.reason)}</td>
        <td><button type="button" class="link" data-diff="${r.revision}">Diff</button>
          ${r.live ? "" : `<button type="button" data-rollback="${r.revision}" ${perms.can_deploy ? "" : "disabled"}>Roll back to this…</button>`}</td>
      </tr>`).join("");
    return `
      <h2>Config revisions</h2>
      <table class="grid" id="revisions">
        <thead><tr><th class="num">Revision</th><th>When</th><th>Author</th><th>Reason</th><th></th></tr></thead>
        <tbody>${rows}</tbody>
      </table>
      <div id="diff-view"></div>`;
  }

  function diffHtml(text) {
    if (!text) return `<p class="muted">No change to the labeling config.</p>`;
    const lines = text.split("\n").map((line) => {
      const cls = line.startsWith("+++") || line.startsWith("---") ? "" : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : line.startsWith("@@") ? "hunk" : "";
      return cls ? `<span class="${cls}">${esc(line)}</span>` : `${esc(line)}\n`;
    });
    return `<pre class="diff">${lines.join("")}</pre>`;
  }

  function wireRevisions() {
    const name = detail.project.name;
    for (const button of document.querySelectorAll("button[data-diff]")) {
      button.addEventListener("click", async () => {
        const target = document.getElementById("diff-view");
        try {
          const diff = await api(`api/project/diff?project=${q(name)}&revision=${button.dataset.diff}`);
          target.innerHTML = `<h3 class="small">Revision ${diff.revision} against ${diff.against ?? "nothing"}</h3>${diffHtml(diff.diff)}`;
        } catch (error) {
          target.innerHTML = `<p class="error-text">${esc(error.message)}</p>`;
        }
      });
    }
    for (const button of document.querySelectorAll("button[data-rollback]")) {
      button.addEventListener("click", () => rollbackTo(Number(button.dataset.rollback)));
    }
  }

  async function rollbackTo(target) {
    const name = detail.project.name;
    const live = detail.project.config_revision;
    let diff;
    try {
      diff = await api(`api/project/diff?project=${q(name)}&revision=${target}&against=${live}`);
    } catch (error) {
      show(error.message, true);
      return;
    }
    const body = `<p>Revision ${target} becomes live again, as a new revision; revision ${live} stays in the history.</p>
      <p class="small muted">What changes, from the live config to revision ${target}:</p>${diffHtml(diff.diff)}`;
    if (!(await confirmDialog(`Roll back ${name} to revision ${target}?`, body, "Roll back"))) return;
    try {
      const result = await api(`api/project/rollback?project=${q(name)}`, { method: "POST", body: { to_revision: target, config_revision: live } });
      show(result.message);
    } catch (error) {
      show(error.message, true);
    }
    await showProject(name);
  }

  window.addEventListener("hashchange", () => { hideNotice(); route(); });
  route();
})();
