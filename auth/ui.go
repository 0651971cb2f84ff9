package auth

import (
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed templates/*.html
var templateFS embed.FS

// ui renders the broker's server-side pages: Dutch, with English for
// browsers that prefer it.
type ui struct {
	dev   bool
	pages map[string]*template.Template
}

func newUI(dev bool) (*ui, error) {
	u := &ui{dev: dev, pages: map[string]*template.Template{}}
	layout, err := fs.ReadFile(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("auth: templates: %w", err)
	}
	entries, _ := fs.ReadDir(templateFS, "templates")
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".html")
		if name == "layout" {
			continue
		}
		body, _ := fs.ReadFile(templateFS, "templates/"+e.Name())
		t, err := template.New(name).Parse(string(layout))
		if err == nil {
			_, err = t.Parse(string(body))
		}
		if err != nil {
			return nil, fmt.Errorf("auth: template %s: %w", name, err)
		}
		u.pages[name] = t
	}
	return u, nil
}

// page is what every template sees.
type page struct {
	Lang, Title, Error, CSRF string
	Dev, LoggedIn            bool
	T                        map[string]string
	Data                     any
}

func lang(r *http.Request) string {
	al := strings.ToLower(r.Header.Get("Accept-Language"))
	for _, part := range strings.Split(al, ",") {
		tag := strings.TrimSpace(strings.Split(part, ";")[0])
		switch {
		case strings.HasPrefix(tag, "nl"):
			return "nl"
		case strings.HasPrefix(tag, "en"):
			return "en"
		}
	}
	return "nl"
}

// text returns the messages in the request's language.
func text(r *http.Request) map[string]string {
	if lang(r) == "en" {
		return messagesEN
	}
	return messagesNL
}

type renderOpts struct {
	status   int
	errKey   string
	csrf     string
	loggedIn bool
}

func (u *ui) render(w http.ResponseWriter, r *http.Request, name, titleKey string, data any, o renderOpts) {
	t := text(r)
	p := page{Lang: lang(r), Title: t[titleKey], CSRF: o.csrf, Dev: u.dev, LoggedIn: o.loggedIn, T: t, Data: data}
	if o.errKey != "" {
		p.Error = t[o.errKey]
		if p.Error == "" {
			p.Error = o.errKey
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	if o.status == 0 {
		o.status = http.StatusOK
	}
	w.WriteHeader(o.status)
	_ = u.pages[name].ExecuteTemplate(w, "layout", p)
}

// message renders a page with a single message.
func (u *ui) message(w http.ResponseWriter, r *http.Request, status int, titleKey, msgKey, link, linkKey string) {
	t := text(r)
	u.render(w, r, "message", titleKey, map[string]string{"Message": t[msgKey], "Link": link, "LinkText": t[linkKey]}, renderOpts{status: status})
}

func (u *ui) errorPage(w http.ResponseWriter, r *http.Request, status int, key string) {
	u.message(w, r, status, "error_title", "err_"+key, "", "")
}

var messagesNL = map[string]string{
	"devbanner":         "ONTWIKKELOMGEVING — geen echte gegevens, geen echte DigiD",
	"logout":            "Uitloggen",
	"choose_title":      "Inloggen bij Regie",
	"choose_intro":      "Kies hoe u wilt inloggen.",
	"local_login":       "Inloggen met uw Regie-account",
	"email":             "E-mailadres",
	"password":          "Wachtwoord",
	"login":             "Inloggen",
	"forgot":            "Wachtwoord vergeten?",
	"error_title":       "Er ging iets mis",
	"err_expired":       "Deze inlogpoging is verlopen. Begin opnieuw vanuit de toepassing.",
	"err_wrong-session": "Deze inlogpoging hoort bij een andere browser. Begin opnieuw.",
	"err_bad-request":   "Het verzoek is ongeldig.",
	"err_csrf":          "Het formulier is verlopen. Laad de pagina opnieuw.",
	"err_upstream":      "Inloggen bij de identiteitsaanbieder is mislukt. Probeer het opnieuw.",
	"err_rate":          "Te veel pogingen. Wacht even en probeer het opnieuw.",
	"nomatch_title":     "Geen dossier gevonden",
	"nomatch_text":      "U bent ingelogd, maar wij vinden geen dossier bij uw gegevens. Er is geen account aangemaakt. Neem contact op met uw hulpverlener.",
	"loggedout_title":   "Uitgelogd",
	"loggedout_text":    "U bent uitgelogd.",
	"login_again":       "Opnieuw inloggen",
	"bad_login":         "E-mailadres of wachtwoord onjuist, of het account is (tijdelijk) geblokkeerd.",
}

var messagesEN = map[string]string{
	"devbanner":         "DEVELOPMENT MODE — no real data, no real DigiD",
	"logout":            "Log out",
	"choose_title":      "Log in to Regie",
	"choose_intro":      "Choose how to log in.",
	"local_login":       "Log in with your Regie account",
	"email":             "E-mail address",
	"password":          "Password",
	"login":             "Log in",
	"forgot":            "Forgot your password?",
	"error_title":       "Something went wrong",
	"err_expired":       "This login attempt has expired. Start again from the application.",
	"err_wrong-session": "This login attempt belongs to another browser. Start again.",
	"err_bad-request":   "The request is invalid.",
	"err_csrf":          "The form has expired. Reload the page.",
	"err_upstream":      "Logging in with the identity provider failed. Please try again.",
	"err_rate":          "Too many attempts. Wait a while and try again.",
	"nomatch_title":     "No file found",
	"nomatch_text":      "You are logged in, but we cannot find a file for you. No account has been created. Please contact your care professional.",
	"loggedout_title":   "Logged out",
	"loggedout_text":    "You have been logged out.",
	"login_again":       "Log in again",
	"bad_login":         "Wrong e-mail address or password, or the account is (temporarily) locked.",
}
