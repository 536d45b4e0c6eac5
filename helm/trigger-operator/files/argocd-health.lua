-- Argo CD health check for trigger-operator.io/Trigger (Lua 5.1, Argo CD's dialect).
-- Install it as resource.customizations.health.trigger-operator.io_Trigger in argocd-cm (README, "GitOps").
-- Maps the operator's status to Argo CD's health: Progressing until the operator has seen the current
-- generation; Suspended when paused or disabled; Degraded when the spec is invalid, the failure limit
-- stopped it, its template or source is missing, or its last run failed; Healthy otherwise. A Finished
-- Trigger (its run budget spent or its active window ended) is Healthy, "Finished: <reason>": it did
-- what it was asked and is done, which is neither a fault to page for nor a pause a person chose.
-- Dead-lettered notifications (status.notifications.deadLetters) never change the health: a sink's
-- outage is not the Trigger's fault, and Argo CD would otherwise page the Trigger's owner for the
-- receiver's; a Healthy message says how many were given up and the last one (docs/notifications.md).
-- A compound Trigger whose part does not exist yet (PartMissing) is Progressing, not Degraded: a GitOps
-- sync may create the part after the compound; a cycle of compound Triggers (PartCycle) is Degraded.
local hs = {}
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to read the Trigger"
  return hs
end
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "The operator has not read the latest spec yet"
  return hs
end
local ready = nil
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" then
      ready = condition
    end
  end
end
local function said(default)
  if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
    return ready.message
  end
  if status.message ~= nil then
    return status.message
  end
  return default
end
if status.phase == "Paused" or status.phase == "Disabled" then
  hs.status = "Suspended"
  hs.message = "The Trigger is " .. string.lower(status.phase)
  return hs
end
if status.phase == "Finished" then
  hs.status = "Healthy"
  hs.message = "Finished: " .. said("the Trigger will not run again on its own")
  return hs
end
if status.phase == "Invalid" or status.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = said("The Trigger cannot run")
  return hs
end
if ready ~= nil and ready.status == "False" and ready.reason == "PartMissing" then
  hs.status = "Progressing"
  hs.message = "PartMissing: " .. said("a part does not exist yet")
  return hs
end
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = (ready.reason or "NotReady") .. ": " .. said("not ready")
  return hs
end
if status.lastExecutionStatus == "Failed" then
  hs.status = "Degraded"
  hs.message = "The last run failed: " .. (status.lastExecutionError or "see the Trigger's status")
  return hs
end
hs.status = "Healthy"
hs.message = said("Scheduled")
local letters = status.notifications and status.notifications.deadLetters
if letters ~= nil and #letters > 0 then
  local last = letters[#letters]
  hs.message = hs.message .. "; " .. #letters .. " notification(s) dead-lettered, the last: " ..
    (last.type or "?") .. " to " .. (last.sink or "?") .. " (" .. (last.reason or "given up") .. ")"
end
return hs
