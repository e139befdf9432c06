-- Argo CD health check for healthscale.io/ClinicalSLO, read from its Ready condition.
--
-- Install: the resource.customizations.health.healthscale.io_ClinicalSLO key of argocd-cm
-- (argocd-cm.clinicalslo-health.yml carries this file verbatim; a test keeps the two equal).
-- Argo CD runs it with gopher-lua (Lua 5.1); it is tested with Lua 5.4, so it uses only what
-- both have.
--
--   Progressing  the operator has not planned this generation yet (no status, an older
--                observedGeneration, no Ready condition, or Ready Unknown)
--   Healthy      Ready=True: planned (and, in Active mode, applied); the message is the decision
--   Degraded     Ready=False: e.g. TargetNotFound, ApiError, InvalidQuery; the message says why
local hs = {}
local status = obj.status

if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for healthscale to plan this ClinicalSLO"
  return hs
end

local generation = obj.metadata ~= nil and obj.metadata.generation or nil
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for healthscale to plan generation " .. string.format("%d", generation)
  return hs
end

local ready = nil
for _, condition in ipairs(status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  end
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
elseif ready.status == "True" then
  hs.status = "Healthy"
  hs.message = status.explanation or ready.message or "Ready"
elseif ready.status == "False" then
  hs.status = "Degraded"
  hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
else
  hs.status = "Progressing"
  hs.message = ready.message or "Ready is Unknown"
end
return hs
